// Wrapper module: builds the etcd server; the local replace lines of
// go.etcd.io/etcd/server/v3 become requires of the same version here.
// Versions must match e2e/stack/versions.env (ETCD_VERSION / ETCD_RAFT_VERSION).
module modelship.local/e2e/stack/etcd

go 1.26.0

require (
	go.etcd.io/etcd/api/v3 v3.6.16
	go.etcd.io/etcd/client/pkg/v3 v3.6.16
	go.etcd.io/etcd/client/v3 v3.6.16
	go.etcd.io/etcd/pkg/v3 v3.6.16
	go.etcd.io/etcd/server/v3 v3.6.16
	go.etcd.io/raft/v3 v3.6.0
)
