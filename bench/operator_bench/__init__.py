"""The operator benchmark (`bench/bench_operator.py`), in modules small enough to read.

  common                constants, quantiles and sizes, the bench workflows
  kube                  the API over plain HTTPS (`Kube`), watches, a tracker of run phases
  apiserver_metrics     Prometheus text: kube-apiserver's write counters
  cluster               the local cluster with the CRDs (`Bench`), the operator process, CPU time
  scenarios_operator    memory, handoff, throughput: what the operator uses and how fast it is
  scenarios_apiserver   writes, size: what the operator costs the API server and etcd
  report                tables, the summary, the machine, bench/RESULTS.md
"""
