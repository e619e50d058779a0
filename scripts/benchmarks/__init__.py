"""The code behind `scripts/bench.py`: trio-chat and the seed server under the same load.

- `config`: what a run is made of: sizes, targets, the shared constants and errors;
- `tally`: the message texts the senders write and what each receiver got;
- `clients`: raw-socket clients (trio-chat's over `ClientConnection`, the seed's
  commands) and the one pump that drives them from a single process;
- `roles`: what each client process does (receive, send, storm, idle, persist, proxy);
- `workers`: starting those processes and steering them over pipes;
- `servers`: the servers as subprocesses, their CPU and memory read from /proc;
- `workloads`: each workload, run against one server, reduced to figures;
- `report`: the table;
- `cli`: the command line.
"""
