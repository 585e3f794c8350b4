"""Developer tools of the checkout (not installed): the settings reference, the docs hook, screenshots."""
