// Package store keeps macro's state in etcd: an embedded single member by
// default, external members for a cluster. It offers typed transactions and
// watches over versioned JSON objects; nothing else in macro talks to etcd.
//
// Keys:
//
//	/macro/pods/<tenant>/<id>     types.Pod (spec, desired state, placement)
//	/macro/names/<tenant>/<name>  pod id, so names are unique per tenant
//	/macro/status/<tenant>/<id>   types.PodStatus, written for the node agent
//	/macro/nodes/<name>           types.Node
//
// Pods are keyed by ID rather than by namespace and name because Docker
// container names are unique per tenant, across compose projects.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"

	"github.com/macro-cloud/macro/types"
)

// Sentinel errors of the store.
var (
	ErrNotFound  = errors.New("not found")
	ErrNameInUse = errors.New("name in use")
	ErrAmbiguous = errors.New("ambiguous prefix")
	ErrConflict  = errors.New("concurrent update")
)

const prefix = "/macro/"

// Store is the typed view of macro's state.
type Store struct {
	// txnOps is how many operations a transaction may hold.
	txnOps int
	cli    *clientv3.Client
	etcd   *embed.Etcd // nil with external etcd
	log    *slog.Logger
	// events is the lease published events live on (events.go).
	events eventLease
	// rest is the lease freed addresses rest on (vpcclaims.go).
	rest eventLease
}

// Config selects where the state lives.
type Config struct {
	// DataDir holds the embedded member's data (DataDir/etcd).
	DataDir string
	// Endpoints of an external etcd cluster; empty means embedded.
	Endpoints []string
	Log       *slog.Logger
	// Member is how the embedded member meets the others of a cluster;
	// its zero value keeps the state on this machine alone (a single
	// member that listens on loopback only).
	Member Member
}

// Open starts the embedded etcd member (or connects to external members)
// and returns a Store over it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("subsystem", "store")
	if len(cfg.Endpoints) > 0 {
		cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 5 * time.Second, Context: ctx})
		if err != nil {
			return nil, fmt.Errorf("connect etcd: %w", err)
		}
		return &Store{cli: withRetries(cli), txnOps: defaultTxnOps, log: log}, nil
	}
	dir := filepath.Join(cfg.DataDir, "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Name = "macro"
	ec.Dir = dir
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	loop, _ := url.Parse("http://127.0.0.1:0")
	ec.ListenClientUrls = []url.URL{*loop}
	ec.AdvertiseClientUrls = []url.URL{*loop}
	ec.ListenPeerUrls = []url.URL{*loop}
	ec.AdvertisePeerUrls = []url.URL{*loop}
	ec.InitialCluster = ec.Name + "=http://127.0.0.1:0"
	if err := cfg.Member.configure(ec); err != nil {
		return nil, err
	}
	ec.AutoCompactionMode = "revision"
	ec.AutoCompactionRetention = "10000"
	ec.QuotaBackendBytes = 8 << 30
	ec.MaxTxnOps = embeddedTxnOps
	ec.MaxRequestBytes = 8 << 20 // a batch of pods with their Docker configs

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready in 60s")
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	st := &Store{cli: withRetries(v3client.New(e.Server)), txnOps: embeddedTxnOps, etcd: e, log: log}
	if cfg.Member.Join {
		if err := st.promote(ctx); err != nil {
			st.Close()
			return nil, err
		}
	}
	if err := st.advertise(ctx, cfg.Member); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// Close stops the embedded member.
func (s *Store) Close() error {
	err := s.cli.Close()
	if s.etcd != nil {
		s.etcd.Close()
	}
	return err
}

func podKey(tenant, id string) string    { return prefix + "pods/" + tenant + "/" + id }
func nameKey(tenant, name string) string { return prefix + "names/" + tenant + "/" + name }
func statusKey(tenant, id string) string { return prefix + "status/" + tenant + "/" + id }
func nodeKey(name string) string         { return prefix + "nodes/" + name }
func tenantPrefix(kind, tenant string) string {
	if tenant == "" {
		return prefix + kind + "/"
	}
	return prefix + kind + "/" + tenant + "/"
}

// CreatePod stores a new pod, claiming its name. It fails with ErrNameInUse
// (wrapped with the holder's id) when the name is taken. It stores p as it
// is: the API creates pods with CreatePodGuarded, which also chooses their
// VPC addresses (vpc.go); a pod stored here without them is addressed by
// its node, as pods were before the cluster recorded addresses.
func (s *Store) CreatePod(ctx context.Context, p *types.Pod) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	nk := nameKey(p.Tenant, p.Name)
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		cmps, ops, err := s.indexOps(ctx, p.Tenant, p.ID, nil, p, nil)
		if err != nil {
			return err
		}
		resp, err := s.cli.Txn(ctx).
			If(append(cmps, clientv3.Compare(clientv3.CreateRevision(nk), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(podKey(p.Tenant, p.ID)), "=", 0))...).
			Then(append(ops, clientv3.OpPut(nk, p.ID), clientv3.OpPut(podKey(p.Tenant, p.ID), string(data)))...).
			Else(clientv3.OpGet(nk)).
			Commit()
		if err != nil {
			return fmt.Errorf("create pod: %w", err)
		}
		if resp.Succeeded {
			p.Revision = resp.Header.Revision
			return nil
		}
		holder := ""
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			holder = string(r.Kvs[0].Value)
		}
		if holder == p.ID {
			// A retry of this create, which had been applied before a
			// leader change hid its answer.
			p.Revision = resp.Header.Revision
			return nil
		}
		if holder != "" {
			return &NameInUseError{Name: p.Name, ID: holder}
		}
		// The tenant's usage or an address claim changed meanwhile.
		backoff(ctx, attempt)
	}
	return ErrConflict
}

// NameInUseError says which pod holds a name.
type NameInUseError struct{ Name, ID string }

func (e *NameInUseError) Error() string { return fmt.Sprintf("name %q is in use by %s", e.Name, e.ID) }
func (e *NameInUseError) Unwrap() error { return ErrNameInUse }

// Pod reads one pod by full id.
func (s *Store) Pod(ctx context.Context, tenant, id string) (types.Pod, error) {
	resp, err := s.cli.Get(ctx, podKey(tenant, id))
	if err != nil {
		return types.Pod{}, err
	}
	if len(resp.Kvs) == 0 {
		return types.Pod{}, ErrNotFound
	}
	return decodePod(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

func decodePod(data []byte, rev int64) (types.Pod, error) {
	var p types.Pod
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("decode pod: %w", err)
	}
	p.Revision = rev
	return p, nil
}

// ResolvePod finds a pod the way Docker resolves a container reference: a
// full id, then an exact name, then a unique id prefix.
func (s *Store) ResolvePod(ctx context.Context, tenant, ref string) (types.Pod, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" || strings.ContainsAny(ref, "\x00") {
		return types.Pod{}, ErrNotFound
	}
	if len(ref) == 64 {
		if p, err := s.Pod(ctx, tenant, ref); err == nil || !errors.Is(err, ErrNotFound) {
			return p, err
		}
	}
	resp, err := s.cli.Get(ctx, nameKey(tenant, ref))
	if err != nil {
		return types.Pod{}, err
	}
	if len(resp.Kvs) > 0 {
		return s.Pod(ctx, tenant, string(resp.Kvs[0].Value))
	}
	if !isHex(ref) {
		return types.Pod{}, ErrNotFound
	}
	resp, err = s.cli.Get(ctx, podKey(tenant, ref), clientv3.WithPrefix(), clientv3.WithLimit(2))
	if err != nil {
		return types.Pod{}, err
	}
	switch len(resp.Kvs) {
	case 0:
		return types.Pod{}, ErrNotFound
	case 1:
		return decodePod(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	}
	return types.Pod{}, ErrAmbiguous
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// Pods lists the pods of a tenant ("" for every tenant).
func (s *Store) Pods(ctx context.Context, tenant string) ([]types.Pod, error) {
	resp, err := s.cli.Get(ctx, tenantPrefix("pods", tenant), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	pods := make([]types.Pod, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := decodePod(kv.Value, kv.ModRevision)
		if err != nil {
			s.log.Error("skipping undecodable pod", "key", string(kv.Key), "err", err)
			continue
		}
		pods = append(pods, p)
	}
	return pods, nil
}

// UpdatePod applies fn to the current pod and writes it back if nothing
// changed it meanwhile, retrying on conflicts. fn may return an error to abort.
func (s *Store) UpdatePod(ctx context.Context, tenant, id string, fn func(*types.Pod) error) (types.Pod, error) {
	for attempt := 0; ; attempt++ {
		p, err := s.Pod(ctx, tenant, id)
		if err != nil {
			return p, err
		}
		before := p
		before.Spec.Networks = maps.Clone(p.Spec.Networks)
		if err := fn(&p); err != nil {
			return p, err
		}
		data, err := json.Marshal(&p)
		if err != nil {
			return p, err
		}
		k := podKey(tenant, id)
		cmps, ops, err := s.indexOps(ctx, tenant, id, &before, &p, nil)
		if err != nil {
			return p, err
		}
		resp, err := s.cli.Txn(ctx).
			If(append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", p.Revision))...).
			Then(append(ops, clientv3.OpPut(k, string(data)))...).
			Commit()
		if err != nil {
			return p, fmt.Errorf("update pod: %w", err)
		}
		if resp.Succeeded {
			p.Revision = resp.Header.Revision
			return p, nil
		}
		if attempt > 100 {
			return p, ErrConflict
		}
	}
}

// RenamePod moves a pod to a new name, atomically freeing the old one.
func (s *Store) RenamePod(ctx context.Context, tenant, id, newName string) error {
	for attempt := 0; attempt < 100; attempt++ {
		p, err := s.Pod(ctx, tenant, id)
		if err != nil {
			return err
		}
		old := p.Name
		p.Name = newName
		data, err := json.Marshal(&p)
		if err != nil {
			return err
		}
		k, nk := podKey(tenant, id), nameKey(tenant, newName)
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", p.Revision),
				clientv3.Compare(clientv3.CreateRevision(nk), "=", 0)).
			Then(clientv3.OpPut(k, string(data)), clientv3.OpPut(nk, id), clientv3.OpDelete(nameKey(tenant, old))).
			Else(clientv3.OpGet(nk)).
			Commit()
		if err != nil {
			return fmt.Errorf("rename pod: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			return &NameInUseError{Name: newName, ID: string(r.Kvs[0].Value)}
		}
	}
	return ErrConflict
}

// DeletePod removes a pod, its name and its status, the addresses it
// claimed, and what it counted in its tenant's usage (vpcclaims.go).
func (s *Store) DeletePod(ctx context.Context, tenant, id string) error {
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		p, err := s.Pod(ctx, tenant, id)
		if err != nil {
			return err
		}
		cmps, ops, err := s.indexOps(ctx, tenant, id, &p, nil, nil)
		if err != nil {
			return err
		}
		nk := nameKey(tenant, p.Name)
		resp, err := s.cli.Txn(ctx).
			If(append(cmps, clientv3.Compare(clientv3.ModRevision(podKey(tenant, id)), "=", p.Revision))...).
			Then(append(ops, clientv3.OpDelete(podKey(tenant, id)), clientv3.OpDelete(statusKey(tenant, id)),
				clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(nk), "=", id)}, []clientv3.Op{clientv3.OpDelete(nk)}, nil))...).
			Commit()
		if err != nil {
			return fmt.Errorf("delete pod: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
		// The pod or its tenant's usage changed meanwhile.
		backoff(ctx, attempt)
	}
	return ErrConflict
}

// Status reads the observed status of a pod; a pod never seen by an agent
// has the zero status and no error.
func (s *Store) Status(ctx context.Context, tenant, id string) (types.PodStatus, error) {
	resp, err := s.cli.Get(ctx, statusKey(tenant, id))
	if err != nil {
		return types.PodStatus{}, err
	}
	if len(resp.Kvs) == 0 {
		return types.PodStatus{ID: id, Phase: types.PhaseCreated}, nil
	}
	var st types.PodStatus
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return st, fmt.Errorf("decode status: %w", err)
	}
	return st, nil
}

// Statuses reads the status of every pod of a tenant ("" for all), by id.
func (s *Store) Statuses(ctx context.Context, tenant string) (map[string]types.PodStatus, error) {
	resp, err := s.cli.Get(ctx, tenantPrefix("status", tenant), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string]types.PodStatus, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var st types.PodStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			continue
		}
		out[st.ID] = st
	}
	return out, nil
}

// PutStatus records what an agent observed. It never creates a status for a
// pod that no longer exists.
func (s *Store) PutStatus(ctx context.Context, tenant string, st types.PodStatus) error {
	data, err := json.Marshal(&st)
	if err != nil {
		return err
	}
	_, err = s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(podKey(tenant, st.ID)), ">", 0)).
		Then(clientv3.OpPut(statusKey(tenant, st.ID), string(data))).
		Commit()
	return err
}

// PodState reads a pod and its status at one revision.
func (s *Store) PodState(ctx context.Context, tenant, id string) (types.Pod, types.PodStatus, int64, error) {
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(podKey(tenant, id)), clientv3.OpGet(statusKey(tenant, id))).Commit()
	if err != nil {
		return types.Pod{}, types.PodStatus{}, 0, err
	}
	pr, sr := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
	if len(pr.Kvs) == 0 {
		return types.Pod{}, types.PodStatus{}, resp.Header.Revision, ErrNotFound
	}
	p, err := decodePod(pr.Kvs[0].Value, pr.Kvs[0].ModRevision)
	if err != nil {
		return p, types.PodStatus{}, 0, err
	}
	st := types.PodStatus{ID: id, Phase: types.PhaseCreated}
	if len(sr.Kvs) > 0 {
		json.Unmarshal(sr.Kvs[0].Value, &st)
	}
	return p, st, resp.Header.Revision, nil
}

// WatchPod delivers the changes to one pod and its status after revision from.
func (s *Store) WatchPod(ctx context.Context, tenant, id string, from int64) <-chan Change {
	out := make(chan Change, 16)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, key := range []string{podKey(tenant, id), statusKey(tenant, id)} {
		wch := s.cli.Watch(ctx, key, clientv3.WithRev(from))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			for resp := range wch {
				if resp.Err() != nil {
					return
				}
				for _, ev := range resp.Events {
					if c, ok := decodeChange(ev); ok {
						select {
						case out <- c:
						case <-ctx.Done():
							return
						}
					}
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(out)
	}()
	return out
}
