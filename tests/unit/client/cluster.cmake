# `threadsync admin cluster` / `admin remove-node` (client/ts_cli_cluster.c).
ts_add_test(ts_cli_cluster_test SOURCES unit/client/ts_cli_cluster_test.c LIBS ts_cli_cluster)
