"""Where a model's config.json and tensor inventory come from: local, the Hugging Face cache, the bundled
catalog, the Hub (sources/resolve.py says the order)."""
