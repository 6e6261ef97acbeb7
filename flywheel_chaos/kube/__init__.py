"""Kubernetes: the client (:mod:`.client`), the safety rules every mutation obeys
(:mod:`.safety`), rollback intents (:mod:`.intents`), nodes (:mod:`.nodes`), pods
(:mod:`.pods`) and drains (:mod:`.drain`)."""
