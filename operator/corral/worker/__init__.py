"""corral.worker: the runtime behind `corral worker`.

Map: `cli` (the click command) builds `config.WorkerSettings`, then runs
`runtime.Worker`, which wires the parts: `claims` (dispatcher, listener),
`jobs` (running each job from the `handlers` registry; built-ins in
`executors`), `completions` (buffer and flusher), `heartbeat`, `upkeep`
(reaper, retention), `signals`, and `drain` (the state machine). They talk to
the queue through `_queue.QueueSession` (over `corral.queue.AsyncQueue`); the
worker keeps its identity with `enrollment`, counts in `metrics` and answers
probes on `endpoint`.

Users only need `corral.handler` and `corral.Job` (re-exported by `corral`).
"""
