package main

// A cluster of servers: the flags of macro server that make it one (the
// first server's peer address, --join for the others), opening the state
// store as a member of it, and joining.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/control"
	"github.com/macro-cloud/macro/store"
)

// clusterConfig are the flags of macro server about the cluster.
type clusterConfig struct {
	join      string // https://SERVER:7443 of a member
	token     string // server join token
	caHash    string // sha256:... of the cluster CA; "" trusts on first use
	peerAddr  string // HOST:PORT of this server's etcd member
	leaderTTL time.Duration
	// imageCopies is how many live servers should hold each image.
	imageCopies int
}

const defaultPeerPort = "2380"

func (c *clusterConfig) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.join, "join", "", "join the cluster of the server at https://HOST:7443 (with --token): this server becomes a member that holds the state too")
	fs.StringVar(&c.token, "token", "", "server join token for --join (macro admin join-token server, on a member); also $MACRO_JOIN_TOKEN")
	fs.StringVar(&c.caHash, "ca-hash", "", "sha256:HEX of the cluster CA that --join must meet (macro admin join-token server prints it); without it the CA is trusted on first use and its hash printed")
	fs.StringVar(&c.peerAddr, "etcd-peer-addr", "", "HOST:PORT where the other servers reach this server's etcd member (TLS); give it on the first server of a cluster (default with --join: this machine's address toward the server joined, port "+defaultPeerPort+"; else loopback: no server can join)")
	fs.IntVar(&c.imageCopies, "image-copies", 2, "how many servers of the cluster keep a copy of each image (at most as many as there are): an image outlives the loss of copies-1 of them")
	fs.DurationVar(&c.leaderTTL, "leader-ttl", control.DefaultLeaderTTL, "how long a leader that stopped answering keeps leading before another server takes over the control loop")
}

// Files of a cluster member in the data directory.
const (
	peerDirName = "etcd-peer"
	peerURLFile = "url" // the member's peer URL, kept for restarts
)

// openStore opens the state store as the flags say: an external etcd, a
// single member on this machine, the first member of a cluster, or a
// member that joins one. It returns the store and the cluster's name.
func openStore(ctx context.Context, cfg serverConfig, dataDir string, log *slog.Logger) (*store.Store, string, error) {
	cc := cfg.cluster
	if cc.token == "" {
		cc.token = os.Getenv("MACRO_JOIN_TOKEN")
	}
	name := localNode(cfg.nodeName).Name
	cluster := cfg.clusterName
	if endpoints := splitList(cfg.etcdEndpoints); len(endpoints) > 0 {
		if cc.join != "" || cc.peerAddr != "" {
			return nil, "", errors.New("--etcd-endpoints excludes --join and --etcd-peer-addr: with an external etcd every server points at its endpoints")
		}
		st, err := store.Open(ctx, store.Config{DataDir: dataDir, Endpoints: endpoints, Log: log})
		if err != nil {
			return nil, "", err
		}
		if cluster, err = agreeClusterName(ctx, st, cluster, name); err == nil {
			err = shareCA(ctx, st, filepath.Join(dataDir, "ca"), cluster)
		}
		if err != nil {
			st.Close()
			return nil, "", err
		}
		return st, cluster, nil
	}
	if cc.join != "" && cc.token == "" {
		return nil, "", errors.New("--join needs --token JOIN_TOKEN (macro admin join-token server, on a member of the cluster)")
	}
	peerDir := filepath.Join(dataDir, peerDirName)
	_, err := os.Stat(filepath.Join(dataDir, "etcd", "member"))
	hasState := err == nil
	member := store.Member{Name: name}
	peerURL := ""
	if cc.peerAddr != "" {
		host, port, err := net.SplitHostPort(cc.peerAddr)
		if err != nil || host == "" || port == "" {
			return nil, "", fmt.Errorf("--etcd-peer-addr %s: want HOST:PORT, an address the other servers reach", cc.peerAddr)
		}
		if ip := net.ParseIP(host); ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
			return nil, "", fmt.Errorf("--etcd-peer-addr %s: give an address the other servers reach", cc.peerAddr)
		}
		peerURL = "https://" + net.JoinHostPort(host, port)
	} else if b, err := os.ReadFile(filepath.Join(peerDir, peerURLFile)); err == nil && hasState {
		peerURL = strings.TrimSpace(string(b)) // a member of a cluster, restarted
	}
	var joined *api.JoinResponse
	switch {
	case cc.join != "" && hasState:
		log.Info("this server is a member of its cluster already: --join is ignored", "data-dir", dataDir)
	case cc.join != "":
		if peerURL == "" {
			ip, err := localAddrToward(cc.join)
			if err != nil {
				return nil, "", err
			}
			peerURL = "https://" + net.JoinHostPort(ip, defaultPeerPort)
		}
		joined, err = requestJoin(ctx, cc, name, peerURL, log)
		if err != nil {
			return nil, "", err
		}
		if err := auth.InstallCA(filepath.Join(dataDir, "ca"), []byte(joined.CACert), []byte(joined.CAKey)); err != nil {
			return nil, "", err
		}
		member.Join, member.Initial = true, joined.Members
		if cluster == "" {
			cluster = joined.Cluster
		}
	}
	if peerURL != "" {
		caName := cluster
		if caName == "" {
			caName = name
		}
		ca, _, err := auth.LoadOrCreateCA(filepath.Join(dataDir, "ca"), caName)
		if err != nil {
			return nil, "", fmt.Errorf("cluster CA: %w", err)
		}
		if err := writePeerFiles(ca, peerDir, peerURL); err != nil {
			return nil, "", err
		}
		member.PeerURL = peerURL
		member.CertFile, member.KeyFile = filepath.Join(peerDir, "peer.pem"), filepath.Join(peerDir, "peer-key.pem")
		member.CAFile = filepath.Join(dataDir, "ca", auth.CACertFile)
		member.PeerCN = auth.PeerCN
	}
	st, err := store.Open(ctx, store.Config{DataDir: dataDir, Log: log, Member: member})
	if err != nil {
		if joined != nil {
			return nil, "", fmt.Errorf("%w (this server was added to the cluster but could not start its member: fix the cause and start it again with the same flags, or remove it on a member with macro admin members rm %s)", err, name)
		}
		return nil, "", err
	}
	if joined != nil {
		log.Info("joined the cluster", "cluster", joined.Cluster, "member", name, "peer", peerURL, "members", len(joined.Members))
	}
	go reportRemoval(ctx, st, log)
	cluster, err = agreeClusterName(ctx, st, cluster, name)
	if err != nil {
		st.Close()
		return nil, "", err
	}
	return st, cluster, nil
}

// agreeClusterName returns the cluster's name: the one given, else the
// one the store keeps (the first server's), else fallback; the first
// server to start stores it.
func agreeClusterName(ctx context.Context, st *store.Store, given, fallback string) (string, error) {
	stored, err := st.ClusterName(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	switch {
	case given != "":
		if stored == "" {
			return given, st.SetClusterName(ctx, given)
		}
		return given, nil
	case stored != "":
		return stored, nil
	}
	return fallback, st.SetClusterName(ctx, fallback)
}

// shareCA gives servers on an external etcd one CA (store.SharedCA): the
// first puts its own there, the others install that one in dir. A data
// dir that holds another CA is refused (InstallCA), never overwritten.
func shareCA(ctx context.Context, st *store.Store, dir, cluster string) error {
	certPEM, keyPEM, err := st.SharedCA(ctx)
	if errors.Is(err, store.ErrNotFound) {
		_, created, err := auth.LoadOrCreateCA(dir, cluster)
		if err != nil {
			return fmt.Errorf("cluster CA: %w", err)
		}
		if certPEM, err = os.ReadFile(filepath.Join(dir, auth.CACertFile)); err != nil {
			return err
		}
		if keyPEM, err = os.ReadFile(filepath.Join(dir, auth.CAKeyFile)); err != nil {
			return err
		}
		err = st.PutSharedCA(ctx, certPEM, keyPEM)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrExists) {
			return err
		}
		// Another server stored its CA first: ours, if just made, goes.
		if created {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		if certPEM, keyPEM, err = st.SharedCA(ctx); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("the cluster's CA in the store: %w", err)
	}
	return auth.InstallCA(dir, certPEM, keyPEM)
}

// writePeerFiles writes the member's peer certificate (fresh on every
// start, for the peer URL's host) and its peer URL.
func writePeerFiles(ca *auth.CA, dir, peerURL string) error {
	u, _ := url.Parse(peerURL)
	certPEM, keyPEM, err := ca.PeerCert([]string{u.Hostname()}, time.Now())
	if err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"peer.pem", certPEM}, {"peer-key.pem", keyPEM}, {peerURLFile, []byte(peerURL + "\n")}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// reportRemoval stops the server when its member stops on its own: the
// cluster removed it (macro admin members rm), or it failed.
func reportRemoval(ctx context.Context, st *store.Store, log *slog.Logger) {
	removed := st.Removed()
	if removed == nil {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-removed:
	}
	if ctx.Err() != nil {
		return
	}
	if st.WasRemoved() {
		log.Error("this server was removed from the cluster (macro admin members rm): it holds no state any more and stops; to bring it back, remove its data directory and --join again")
	} else {
		log.Error("this server's etcd member stopped: the server stops")
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
}

// localAddrToward is this machine's address on the route to the server
// of joinURL.
func localAddrToward(joinURL string) (string, error) {
	u, err := url.Parse(joinURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("--join %s: want https://HOST:PORT of a member", joinURL)
	}
	c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), "7443"))
	if err != nil {
		return "", fmt.Errorf("--join %s: no route to it: %w", joinURL, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// joinBase normalizes --join: https, a host, the API port 7443 by default.
func joinBase(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return nil, fmt.Errorf("--join %s: want https://HOST:PORT of a member's API port", s)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "7443")
	}
	u.Path, u.RawQuery, u.Fragment = "", "", ""
	return u, nil
}

// requestJoin asks the member at cc.join to add this server: it fetches the
// cluster CA, checks it against cc.caHash (or prints its hash, trusting it
// on first use), and then, over TLS verified with that CA, sends the join
// token.
func requestJoin(ctx context.Context, cc clusterConfig, name, peerURL string, log *slog.Logger) (*api.JoinResponse, error) {
	base, err := joinBase(cc.join)
	if err != nil {
		return nil, err
	}
	insecure := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var ca *x509.Certificate
	for attempt := 0; ; attempt++ {
		ca, err = fetchCA(ctx, insecure, base.String()+api.Prefix+"/ca")
		if err == nil || attempt >= 30 || ctx.Err() != nil {
			break
		}
		log.Info("cannot reach the server to join yet; retrying", "server", base.String(), "err", err)
		time.Sleep(2 * time.Second)
	}
	if err != nil {
		return nil, fmt.Errorf("--join %s: %w", base, err)
	}
	hash := auth.CAHash(ca)
	switch {
	case cc.caHash == "":
		fmt.Fprintf(os.Stderr, "joining the cluster whose CA is %q, %s\n  (trusted on first use: pass --ca-hash %s to pin it)\n", ca.Subject.CommonName, hash, hash)
	case !strings.EqualFold(strings.TrimSpace(cc.caHash), hash):
		return nil, fmt.Errorf("--join %s: the server's CA is %s, not --ca-hash %s: refusing to send the token (is this the cluster you meant?)", base, hash, cc.caHash)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	body, _ := json.Marshal(api.JoinRequest{Name: name, PeerURL: peerURL})
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+api.Prefix+"/cluster/join", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(cc.token))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("--join %s: %w", base, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			var jr api.JoinResponse
			if err := json.Unmarshal(b, &jr); err != nil {
				return nil, fmt.Errorf("--join %s: reading the answer: %w", base, err)
			}
			return &jr, nil
		}
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &m) != nil || m.Message == "" {
			m.Message = resp.Status
		}
		// The cluster refuses a member while one it added has not
		// started yet (etcd's strict reconfiguration check): wait.
		if resp.StatusCode >= 500 && attempt < 30 && ctx.Err() == nil {
			log.Info("the cluster cannot add this server yet; retrying", "err", m.Message)
			time.Sleep(2 * time.Second)
			continue
		}
		return nil, fmt.Errorf("--join %s: %s", base, m.Message)
	}
}

func fetchCA(ctx context.Context, c *http.Client, u string) (*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if resp.StatusCode != http.StatusOK || blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("GET %s: %s: no CA certificate (is this a macro server's API port?)", u, resp.Status)
	}
	return x509.ParseCertificate(blk.Bytes)
}
