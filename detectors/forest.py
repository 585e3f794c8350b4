"""A fitted scikit-learn ``IsolationForest``'s ``decision_function``, computed for small batches
without its per-call overhead.

``decision_function`` validates the input and dispatches every tree through joblib; for the
writer's batches (hundreds of rows, 100 trees) that dispatch cost more than the trees: about
8 % of detection's CPU. This computes the same values from the forest's public parts (each
tree's ``apply`` and ``tree_`` arrays, ``estimators_features_``, ``max_samples_``,
``offset_``), following the scoring of Liu et al. as scikit-learn implements it. The tests
compare it with ``decision_function`` on every call shape the detector makes.
"""

from __future__ import annotations

from typing import Any

# numpy is imported where it is used: it comes with the optional ``ml`` extra, and importing
# the detectors must not need it.


def average_path_length(n: Any) -> Any:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n
    points (0 for n <= 1, 1 for n == 2), the normalisation of an isolation depth."""
    import numpy as np

    n = np.asarray(n, dtype=float)
    out = np.zeros(n.shape, dtype=float)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _node_depths(tree: Any) -> Any:
    """Nodes on the path from the root to each node, the root counting 1."""
    import numpy as np

    left, right = tree.children_left, tree.children_right
    depth = np.zeros(tree.node_count, dtype=float)
    depth[0] = 1.0
    # Children always have higher ids than their parent in scikit-learn's trees.
    for node in range(tree.node_count):
        if left[node] != -1:
            depth[left[node]] = depth[right[node]] = depth[node] + 1.0
    return depth


class ForestScorer:
    """``decision_function`` of one fitted ``IsolationForest`` (kept with the model)."""

    def __init__(self, model: Any) -> None:
        import numpy as np

        self.n_features = int(model.n_features_in_)
        self.trees = []
        for est, feats in zip(model.estimators_, model.estimators_features_, strict=True):
            tree = est.tree_
            # Path length to each leaf plus the expected rest of the path for the training
            # points the leaf still holds, as one lookup per leaf.
            leaf_cost = _node_depths(tree) + average_path_length(tree.n_node_samples) - 1.0
            # A tree was fitted on a column subset only when the forest drew fewer features.
            cols = np.asarray(feats) if len(feats) != self.n_features else None
            self.trees.append((est, cols, leaf_cost))
        self.denominator = len(self.trees) * float(average_path_length([model.max_samples_])[0])
        self.offset = float(model.offset_)

    def decision_function(self, X: Any) -> Any:
        import numpy as np

        # The trees compare float32 features, as decision_function's validation makes them.
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {X.shape}")
        depths = np.zeros(X.shape[0], dtype=float)
        for est, cols, leaf_cost in self.trees:
            sub = X if cols is None else np.ascontiguousarray(X[:, cols])
            depths += leaf_cost[est.apply(sub, check_input=False)]
        # Trees of one training point each have no depth to normalise by: the ratio is 1.
        ratio = depths / self.denominator if self.denominator else np.ones_like(depths)
        return -(2.0**-ratio) - self.offset
