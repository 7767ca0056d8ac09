"""corral.worker: the runtime behind `corral worker`.

Map: `cli` (the click command) builds `config.WorkerSettings`, then runs
`runtime.Worker`, which talks to the queue through `_queue.QueueSession`
(over `corral.queue.AsyncQueue`), keeps its identity with `enrollment`, runs
jobs from the `handlers` registry (built-ins in `executors`), counts in
`metrics` and answers probes on `endpoint`.

Users only need `corral.handler` and `corral.Job` (re-exported by `corral`).
"""
