"""Model versions: the models pages and endpoints, trying, activating, bundles, and the models commands."""
