"""Reports over the incident record: root causes, MTTF, time lost and ETTR (polars)."""
