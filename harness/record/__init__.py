"""What a run leaves behind: evidence records and their chain, the gate that reads them, reports."""
