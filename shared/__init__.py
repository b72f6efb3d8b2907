"""Code every service uses: settings, protocol, codec, Redis keys, model registry, logging."""
