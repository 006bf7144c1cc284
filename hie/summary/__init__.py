"""Patient summaries: the record a caller may see (record), the IPS document (ips) and the
JP-CLINS 6 information (sixinfo)."""
