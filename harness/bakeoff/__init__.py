"""The bake-off: every candidate state authority through the same proofs and faults, N runs
each, with OpenTofu in the loop, into one ranked scorecard that names what to deploy.

:mod:`.plan` (candidates and faults), :mod:`.settle` (a lab a run may start from),
:mod:`.runner` (the runs, resumable), :mod:`.scorecard` (numbers and ranking from the
evidence records), :mod:`.render` (Markdown and one self-contained HTML page).
"""
