"""``python -m harness.lab.nodeagent``: run one node agent."""

from harness.lab.nodeagent.agent import main

raise SystemExit(main())
