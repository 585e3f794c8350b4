"""``tracking doctor [--json]``: spool, writer, unsealed window, newest seal, alert channels
and forwarders (last delivery, backlog, failures, dead letters), keys.

Exit code 1 when something is unhealthy (see ``tracking.health``). The writer's counters are
per process: the web processes' own counters are served by ``api/tracking/health/``.
"""

from __future__ import annotations

import json as jsonlib

from tracking.health import collect

help = "Report the health of recording: spool, writer queue, failures, unsealed window, keys."


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--no-anchor",
        action="store_true",
        help="do not record the chain head in TRACKING_ANCHOR_FILE (still compared)",
    )


def _fmt_age(seconds) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s"


def handle(command, *, json: bool = False, no_anchor: bool = False, **options) -> int:
    data = collect(advance_anchor=not no_anchor)
    if json:
        command.stdout.write(jsonlib.dumps(data, indent=2, default=str))
        return 0 if data["healthy"] else 1
    out = command.stdout.write
    out(f"Status: {data['status'].upper()}   (database: {data['database']})")
    spool = data.get("spool")
    if spool is None:
        out("Spool: not available")
    elif "error" in spool:
        out(f"Spool: error {spool['error']}")
    else:
        out(
            f"Spool: {spool.get('events', 0)} events in {spool.get('files', 0)} files "
            f"({spool.get('bytes', 0)} bytes), oldest {_fmt_age(spool.get('oldest_age'))}, "
            f"{spool.get('rejected', 0)} rejected"
        )
    writer = data.get("writer")
    if writer is None:
        out("Writer: not available")
    elif "error" in writer:
        out(f"Writer: error {writer['error']}")
    else:
        out(
            f"Writer (this process): queue {writer.get('queue_depth', 0)}/"
            f"{writer.get('queue_size', '?')}, written {writer.get('written', 0)}, "
            f"failed {writer.get('failed', 0)}, dropped {writer.get('dropped', 0)}, "
            f"spooled {writer.get('spooled', 0)}"
        )
    sealing = data.get("sealing")
    if sealing:
        out(
            f"Sealing: {sealing['unsealed']} unsealed (oldest {_fmt_age(sealing['oldest_unsealed_age'])}), "
            f"newest seal {_fmt_age(sealing['newest_seal_age'])} ago, sealed through seq "
            f"{sealing['sealed_through']}, seal on write {'on' if sealing['seal_on_write'] else 'off'}"
        )
        if sealing.get("unjudged"):
            out(
                f"Verdicts owed: {sealing['unjudged']} events in the intake, not stored as "
                f"activities yet (oldest {_fmt_age(sealing['oldest_unjudged_age'])})"
            )
        if sealing["chain_head"]:
            out(f"Chain head: {sealing['chain_head']}")
        anchor = sealing.get("anchor")
        if anchor is None:
            out("Anchor: not kept (set TRACKING_ANCHOR_FILE)")
        elif not anchor["problem"]:
            moved = anchor["advanced_to"]
            out(f"Anchor: {anchor['file']} " + (f"now at seq {moved}" if moved else "unchanged"))
    delivery = data.get("delivery") or {}
    if "error" in delivery:
        out(f"Alerts and forwarding: error {delivery['error']}")
    for row in delivery.get("consumers", []):
        extra = (
            f", {row.get('pending_messages', 0)} messages pending, "
            f"{row['dead_letters']} dead letters"
            if row["kind"] == "alert"
            else f", {row.get('unforwarded_seals', 0)} seals to forward"
        )
        out(
            f"{row['kind'].capitalize()} {row['name']} ({row['backend']}): last delivery "
            f"{row['last_delivery'] or 'never'}, backlog {row['backlog']}{extra}, "
            f"{row['failures']} failed attempts"
            + (f" (last error: {row['last_error']})" if row["failing"] else "")
        )
    signals = delivery.get("signals")
    if signals and signals.get("receiver_failures"):
        out(f"Signal receivers that raised (this process): {signals['receiver_failures']}")
    keys = data["keys"]
    out(
        f"Keys: {keys['encryption_keys']} encryption (current {keys['encryption_key_id'] or '-'}), "
        f"{keys['seal_keys']} seal (current {keys['seal_key_id'] or '-'}), hash key {keys['hash_key']}"
    )
    for w in data["warnings"]:
        out(f"WARNING: {w}")
    for p in data["problems"]:
        out(f"PROBLEM: {p}")
    return 0 if data["healthy"] else 1
