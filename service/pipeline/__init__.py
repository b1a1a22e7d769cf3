"""The pipeline a job goes through, in order:

- `inbox`: the contract of the watched folder (job names, sidecars, which files a job owns);
- `intake`: settled files become recorded, staged jobs (or refusals with advice);
- `worker`: a claimed job's pictures through the engine, with progress and checkpoints;
- `publisher`: the writer of finished jobs' endings (on a GPU, beside the next job);
- `ending`: the one writer of a job's end (its outbox folder, its status, the cleanup);
- `outbox`: each folder published whole, once; `drawing`: the preview and the loss plot.

The daemon (`service.daemon`) drives them; the doors (`service.cli`, `service.web`) only
write into the inbox and read the store.
"""
