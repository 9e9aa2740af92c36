package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/atomicfile"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Node credentials (nodeproto/identity.go): tokens bound to one node, that
// an agent gets for its join token at its first start and keeps in its
// data dir, and that a server makes for its own node.

// nodeCredentialFile holds an agent's credential (0600).
const nodeCredentialFile = "node-credential"

// issueNodeCredential is HandlerConfig.Credential: the credential of node,
// stored as a node token bound to it; a name that has one gets none.
func issueNodeCredential(ctx context.Context, st *store.Store, node string) (string, error) {
	raw, jt, err := auth.NewNodeCredential(node, time.Now().UTC())
	if err != nil {
		return "", err
	}
	err = st.CreateJoinToken(ctx, &jt)
	if errors.Is(err, store.ErrExists) {
		return "", fmt.Errorf("%w: node %s (macro admin join-token rm %s removes it, for a machine that is gone)", nodeproto.ErrCredentialTaken, node, jt.ID)
	}
	if err != nil {
		return "", err
	}
	return raw, nil
}

// nodeCredentialed is HandlerConfig.Credentialed: whether node's
// credential is stored.
func nodeCredentialed(ctx context.Context, st *store.Store, node string) (bool, error) {
	_, err := st.JoinToken(ctx, auth.NodeCredentialID(node))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// checkNodeToken is HandlerConfig.Check: a node token, and the node it is
// bound to.
func checkNodeToken(ctx context.Context, st *store.Store, token string) (string, error) {
	t, err := auth.CheckJoinToken(ctx, st, types.JoinNode, token)
	return t.Node, err
}

// agentToken is the token the agent speaks with: its credential, from its
// data dir or, at its first start, for its join token (cli, made with the
// join token, asks the servers).
func agentToken(ctx context.Context, cli *nodeproto.Client, dataDir, node string, log *slog.Logger) (string, error) {
	p := filepath.Join(dataDir, nodeCredentialFile)
	if b, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	tok, err := cli.NodeCredential(ctx, node)
	if err != nil {
		return "", fmt.Errorf("node credential for %s: %w", node, err)
	}
	// Whole or not at all: the name is taken once the servers gave it.
	if err := atomicfile.Write(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	log.Info("node credential received", "node", node)
	return tok, nil
}

// serverNodeToken is the credential of a server's own node: kept in its
// data dir across restarts (the mount processes of its volumes use it),
// made again when the store no longer knows it.
func serverNodeToken(ctx context.Context, st *store.Store, dataDir, node string) (string, error) {
	p := filepath.Join(dataDir, "server-node-credential")
	if b, err := os.ReadFile(p); err == nil {
		tok := strings.TrimSpace(string(b))
		if t, err := auth.CheckJoinToken(ctx, st, types.JoinNode, tok); err == nil && t.Node == node {
			return tok, nil
		}
	}
	if err := st.DeleteJoinToken(ctx, auth.NodeCredentialID(node)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	tok, err := issueNodeCredential(ctx, st, node)
	if err != nil {
		return "", err
	}
	return tok, atomicfile.Write(p, []byte(tok+"\n"), 0o600)
}

// admitCache remembers for a few seconds which nodes may ask for which
// volumes (every FUSE operation asks) or images.
type admitCache struct {
	mu sync.Mutex
	m  map[string]time.Time // tenant/name/node -> until
}

const admitFor = 5 * time.Second

// admit passes when key was admitted in the last admitFor, or when check
// admits it now; a refusal is ErrNoBusiness.
func (c *admitCache) admit(key string, check func() (bool, error)) error {
	c.mu.Lock()
	until, ok := c.m[key]
	c.mu.Unlock()
	if ok && time.Now().Before(until) {
		return nil
	}
	ok, err := check()
	if err != nil {
		return err
	}
	if !ok {
		return nodeproto.ErrNoBusiness
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > 100000 {
		c.m = map[string]time.Time{}
	}
	c.m[key] = time.Now().Add(admitFor)
	c.mu.Unlock()
	return nil
}

// imageAdmit is HandlerConfig.ImageAdmit: a node gets a tenant's image
// when a pod of the tenant assigned to it runs the image, or when it is a
// server's (servers copy images between them).
func imageAdmit(st *store.Store) func(ctx context.Context, tenant, id, node string) error {
	var c admitCache
	return func(ctx context.Context, tenant, id, node string) error {
		return c.admit(tenant+"/"+id+"/"+node, func() (bool, error) {
			servers, err := st.Servers(ctx)
			if err != nil {
				return false, err
			}
			if _, ok := servers[node]; ok {
				return true, nil
			}
			pods, err := st.Pods(ctx, tenant)
			if err != nil {
				return false, err
			}
			for _, p := range pods {
				if p.Node == node && p.Spec.ImageID == id {
					return true, nil
				}
			}
			return false, nil
		})
	}
}

// Admit lets node ask for the volume's data when it holds or keeps a copy
// of the volume, when it is a server's (WebDAV and S3 through the server's
// own node), or, for an nfs or gfs volume, when a pod assigned to it
// mounts the volume (an lv2 or local volume's pods run on its node).
func (d *volumeDirectory) Admit(ctx context.Context, tenant, name, node string) error {
	return d.admits.admit(tenant+"/"+name+"/"+node, func() (bool, error) { return d.hasBusiness(ctx, tenant, name, node) })
}

func (d *volumeDirectory) hasBusiness(ctx context.Context, tenant, name, node string) (bool, error) {
	servers, err := d.st.Servers(ctx)
	if err != nil {
		return false, err
	}
	if _, ok := servers[node]; ok {
		return true, nil
	}
	v, err := d.st.Volume(ctx, tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	holder, err := volumeNode(ctx, d.st, v)
	if err != nil {
		return false, err
	}
	if holder == node {
		return true, nil
	}
	if v.Driver != "nfs" && v.Driver != "gfs" {
		// An lv2 or local volume lives on its node alone: its pods
		// run there, and only servers (WebDAV, S3) reach it from
		// elsewhere.
		return false, nil
	}
	for _, r := range v.Replicas {
		if r.Node == node {
			return true, nil
		}
	}
	pods, err := d.st.Pods(ctx, tenant)
	if err != nil {
		return false, err
	}
	for _, p := range pods {
		if p.Node != node {
			continue
		}
		for _, m := range p.Spec.Mounts {
			if m.Type == "volume" && m.Source == name {
				return true, nil
			}
		}
	}
	return false, nil
}
