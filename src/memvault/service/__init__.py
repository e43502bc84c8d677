"""Every rule of memvault lives in this package; the doors only translate."""
