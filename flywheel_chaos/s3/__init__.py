"""The state authority over S3: what it is (:mod:`.authority`), how to call it with bounded
time (:mod:`.client`), the ways a call fails (:mod:`.errors`), what the probes and the guard
check (:mod:`.checks`) and the backup proofs (:mod:`.backup`)."""
