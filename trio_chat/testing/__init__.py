"""Helpers shared by trio-chat's tests and scripts, as `trio.testing` is for Trio.

- `netsim`: a simulated datagram network (seeded loss, duplication, reordering).
- `driver`: the engine driven by hand (`EngineDriver`) and clients on it (`Peer`).
- `daemon`: the real daemon as a child process, killed and restarted at will; the
  `trio-chat` command line (`CLI`, `cli_env`) for subprocesses.
- `raw_peer`: a client that can be made to stop answering.
- `listening`: what a client is shown, gathered (`received`).
- `fault_proxy`: a UDP proxy that drops, duplicates, delays and reorders.
- `chat_peer`, `loss_run`, `crash_run`, `live_fuzz`, `garbage`, `fuzz_channel`: the long
  fault runs.
- `attacks`: what the attack tests and `scripts/attack_*.py` share (spoofed first
  flights, an on-path tap, many loopback source addresses).
"""
