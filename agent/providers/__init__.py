"""Provider adapters: one module per backend API, all behind the interfaces in `base`."""
