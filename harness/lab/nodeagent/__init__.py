"""The lab's kubelet: one process per node (``python -m harness.lab.nodeagent --node bumble``).

It registers its Node with the topology's labels, renews the node Lease and
the Ready condition (:mod:`.heartbeat`), and runs the pods bound to it
(:mod:`.agent`):

* containers whose command is a program the lab knows run as real local
  processes bound to the loopback twin of the pod IP (10.244.N.X ->
  127.244.N.X), each in a private mount namespace with its own /tmp when the
  host allows it; other containers are simulated as Running (:mod:`.runtime`);
* volumes: a PVC bound to a node-local PV is a directory under
  ``.lab/nodes/<node>/volumes/<pv>``; emptyDir, Secret and ConfigMap volumes
  are materialised in the pod directory (:mod:`.volumes`). A container's
  mount paths are rewritten to those directories in its args and env;
* the environment: service links, the downward API, Secret and ConfigMap
  keys (:mod:`.links`);
* readiness from the readinessProbe (:mod:`.readiness`), restarts per
  restartPolicy with a short backoff (1 s doubling to 10 s), counted, and the
  pod status published (:mod:`.podstatus`);
* deletion as a kubelet does it: SIGTERM, the grace period, SIGKILL, then the
  pod object is removed with grace 0.

It polls the API (pods every 0.5 s) rather than watching: simple, and the
latency is bounded and known. SIGSTOP of this process and its pods (``lab
node stop``) makes the node silent, exactly like a hung kubelet.
"""
