package store

// Membership of the embedded etcd cluster: the servers that hold the
// state. A cluster has 1, 3 or 5 members; a server joins by being added
// (AddMember, on a server that is a member already) and then starting its
// own member with Member.Join set.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Member configures the embedded etcd member for a cluster.
type Member struct {
	// Name of the member, unique in the cluster (the server's node name).
	Name string
	// PeerURL is where the other members reach this one,
	// https://IP:PORT; the member listens on it. Empty: loopback only, a
	// cluster of one that no server can join.
	PeerURL string
	// CertFile, KeyFile and CAFile secure the peer traffic: each member
	// presents a certificate of the cluster CA (for both server and
	// client use) and accepts only peers that present one.
	CertFile, KeyFile, CAFile string
	// PeerCN, when set, is the only common name accepted of a peer's
	// certificate.
	PeerCN string
	// Join starts the member into an existing cluster whose members
	// (this one included, added beforehand) are Initial. It matters on
	// the first start only: a member that has state rejoins its cluster.
	Join    bool
	Initial []MemberInfo
}

// MemberInfo is one member of the cluster.
type MemberInfo struct {
	ID   uint64 `json:"id,string"`
	Name string `json:"name"` // "" until the member has started
	// PeerURLs are where the other members reach it.
	PeerURLs []string `json:"peerURLs"`
	Learner  bool     `json:"learner,omitempty"`
	// Leader is true for the raft leader, Self for the member that
	// answered (this server's own).
	Leader bool `json:"leader,omitempty"`
	Self   bool `json:"self,omitempty"`
}

// ErrNotClustered says that the member listens on loopback only, so no
// other server can join it.
var ErrNotClustered = errors.New("this server keeps its state for itself alone: restart it with --etcd-peer-addr IP:PORT (an address the other servers reach) so that servers can join")

// configure applies m to the embedded member's configuration.
func (m Member) configure(ec *embed.Config) error {
	if m.Name != "" {
		ec.Name = m.Name
	}
	if m.PeerURL == "" {
		ec.InitialCluster = ec.Name + "=http://127.0.0.1:0"
		return nil
	}
	u, err := url.Parse(m.PeerURL)
	if err != nil || u.Scheme != "https" || u.Port() == "" {
		return fmt.Errorf("peer url %q: want https://HOST:PORT", m.PeerURL)
	}
	ec.ListenPeerUrls = []url.URL{*u}
	ec.AdvertisePeerUrls = []url.URL{*u}
	ec.PeerTLSInfo = transport.TLSInfo{CertFile: m.CertFile, KeyFile: m.KeyFile, TrustedCAFile: m.CAFile, ClientCertAuth: true}
	if m.PeerCN != "" {
		ec.PeerTLSInfo.AllowedCNs = []string{m.PeerCN}
	}
	ec.InitialCluster = ec.Name + "=" + m.PeerURL
	ec.ClusterState = embed.ClusterStateFlagNew
	if m.Join {
		var parts []string
		for _, mi := range m.Initial {
			name := mi.Name
			if name == "" && slices.Contains(mi.PeerURLs, m.PeerURL) {
				name = ec.Name
			}
			if name == "" {
				return fmt.Errorf("member %x of the cluster has not started yet: start it (or remove it with macro admin members rm) before another joins", mi.ID)
			}
			for _, p := range mi.PeerURLs {
				parts = append(parts, name+"="+p)
			}
		}
		ec.InitialCluster = strings.Join(parts, ",")
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	return nil
}

// promote makes this member, which joined as a learner, a voting member
// once it has caught up with the leader.
func (s *Store) promote(ctx context.Context) error {
	id := uint64(s.etcd.Server.MemberID())
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		if !s.etcd.Server.IsLearner() {
			return nil
		}
		_, err := s.cli.MemberPromote(ctx, id)
		if err == nil {
			s.log.Info("promoted from learner to voting member")
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("promote this member to a voting one: %w", err)
		}
		s.log.Debug("not promoted yet", "err", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// advertise brings the member's peer URL in the cluster up to date when
// the server was started with another one than before (a single machine
// that becomes the first server of a cluster).
func (s *Store) advertise(ctx context.Context, m Member) error {
	if m.PeerURL == "" {
		return nil
	}
	id := uint64(s.etcd.Server.MemberID())
	ms, err := s.Members(ctx)
	if err != nil {
		return err
	}
	for _, mi := range ms {
		if mi.ID == id && !slices.Equal(mi.PeerURLs, []string{m.PeerURL}) {
			s.log.Info("updating this member's peer url", "from", mi.PeerURLs, "to", m.PeerURL)
			if _, err := s.cli.MemberUpdate(ctx, id, []string{m.PeerURL}); err != nil {
				return fmt.Errorf("update peer url: %w", err)
			}
		}
	}
	return nil
}

// Members lists the members of the cluster, by name.
func (s *Store) Members(ctx context.Context) ([]MemberInfo, error) {
	// Serializable: this member's view, which answers while the
	// cluster waits for a member it added to start.
	resp, err := s.cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return s.memberInfos(resp.Members), nil
}

func (s *Store) memberInfos(members []*etcdserverpb.Member) []MemberInfo {
	var self, leader uint64
	if s.etcd != nil {
		self, leader = uint64(s.etcd.Server.MemberID()), uint64(s.etcd.Server.Leader())
	}
	out := make([]MemberInfo, 0, len(members))
	for _, m := range members {
		out = append(out, MemberInfo{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, Learner: m.IsLearner, Self: m.ID == self, Leader: m.ID == leader})
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SelfPeerURLs are the peer URLs of this server's own member; nil with an
// external etcd.
func (s *Store) SelfPeerURLs(ctx context.Context) ([]string, error) {
	if s.etcd == nil {
		return nil, nil
	}
	ms, err := s.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Self {
			return m.PeerURLs, nil
		}
	}
	return nil, errors.New("this server is not a member of its cluster")
}

// AddMember adds a member named name that listens on peerURL and returns
// the members after the addition (the new one included, nameless until it
// starts). It joins as a learner, which does not count for the quorum, so
// that the cluster stays available while it starts and catches up; it
// promotes itself to a voting member then (see Open). Adding a member again that has not started yet returns the
// same list, so a server that failed between being added and starting
// can retry.
func (s *Store) AddMember(ctx context.Context, name, peerURL string) ([]MemberInfo, error) {
	if s.etcd == nil {
		return nil, errors.New("the state is in an external etcd: add its members with etcdctl, and start the server with --etcd-endpoints")
	}
	if self, err := s.SelfPeerURLs(ctx); err != nil {
		return nil, err
	} else if len(self) == 0 || !strings.HasPrefix(self[0], "https://") {
		return nil, ErrNotClustered
	}
	ms, err := s.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		switch {
		case m.Name == name && slices.Contains(m.PeerURLs, peerURL):
			return nil, fmt.Errorf("%w: server %s is a member already: remove it first (macro admin members rm %s) to join it anew", ErrExists, name, name)
		case m.Name == name:
			return nil, fmt.Errorf("%w: a member is named %s already: give the new server another --node-name", ErrExists, name)
		case m.Name == "" && slices.Contains(m.PeerURLs, peerURL):
			return ms, nil // added before, never started
		case slices.Contains(m.PeerURLs, peerURL):
			return nil, fmt.Errorf("%w: member %s listens on %s already", ErrExists, m.Name, peerURL)
		}
	}
	// etcd adds a member only when the cluster keeps its quorum should
	// the new one not come up: after the previous one has been connected
	// for a few seconds. Wait for that, within reason.
	var resp *clientv3.MemberAddResponse
	err = whenHealthy(ctx, func() (err error) {
		resp, err = s.cli.MemberAddAsLearner(ctx, []string{peerURL})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("add member: %w", err)
	}
	return s.memberInfos(resp.Members), nil
}

// RemoveMember removes the member named name (or of that hex ID) from the
// cluster; ErrNotFound when there is none. The last member stays.
func (s *Store) RemoveMember(ctx context.Context, name string) (MemberInfo, error) {
	ms, err := s.Members(ctx)
	if err != nil {
		return MemberInfo{}, err
	}
	for _, m := range ms {
		if m.Name != name && fmt.Sprintf("%x", m.ID) != name {
			continue
		}
		if len(ms) == 1 {
			return m, errors.New("cannot remove the last member of the cluster")
		}
		if err := whenHealthy(ctx, func() error { _, err := s.cli.MemberRemove(ctx, m.ID); return err }); err != nil {
			return m, fmt.Errorf("remove member: %w", err)
		}
		return m, nil
	}
	return MemberInfo{}, ErrNotFound
}

// Removed is closed when the embedded member stops on its own: the
// cluster removed it (macro admin members rm) or it failed. Nil with an
// external etcd.
func (s *Store) Removed() <-chan struct{} {
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Server.StopNotify()
}

// WasRemoved says whether the cluster removed this member.
func (s *Store) WasRemoved() bool {
	return s.etcd != nil && s.etcd.Server.IsIDRemoved(uint64(s.etcd.Server.MemberID()))
}

func clusterNameKey() string { return prefix + "cluster/name" }

// ClusterName is the name of the cluster, as the first server stored it;
// ErrNotFound before.
func (s *Store) ClusterName(ctx context.Context) (string, error) {
	resp, err := s.cli.Get(ctx, clusterNameKey())
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", ErrNotFound
	}
	return string(resp.Kvs[0].Value), nil
}

// SetClusterName stores the cluster's name unless one is stored already.
func (s *Store) SetClusterName(ctx context.Context, name string) error {
	k := clusterNameKey()
	_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, name)).Commit()
	return err
}

// whenHealthy calls change until etcd stops refusing it as unsafe for the
// quorum ("unhealthy cluster": a member it counts on has not been
// connected for long enough yet), for 30 seconds at most.
func whenHealthy(ctx context.Context, change func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := change()
		if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCUnhealthy) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Second)
	}
}
