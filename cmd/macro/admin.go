package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/types"
)

// adminSocketName is the admin API's unix socket in the data directory.
const adminSocketName = "admin.sock"

const adminUsage = `macro admin: manage tenants and access tokens of the server on this machine

Usage:
  macro admin [--data-dir DIR] tenant create NAME [--pods N] [--memory SIZE] [--images SIZE] [--volumes SIZE] [--volume-count N]
  macro admin [--data-dir DIR] tenant set-quota NAME [--pods N] [--memory SIZE] [--images SIZE] [--volumes SIZE] [--volume-count N]
  macro admin [--data-dir DIR] tenant set-egress NAME on|off
  macro admin [--data-dir DIR] tenant set-suspend NAME DURATION|off
  macro admin [--data-dir DIR] tenant ls
  macro admin [--data-dir DIR] tenant rm NAME [--force]
  macro admin [--data-dir DIR] token create --tenant NAME [--description TEXT]
  macro admin [--data-dir DIR] token ls --tenant NAME
  macro admin [--data-dir DIR] token revoke --tenant NAME ID
  macro admin [--data-dir DIR] join-token server|node [--ttl 24h]
  macro admin [--data-dir DIR] join-token ls
  macro admin [--data-dir DIR] join-token rm ID
  macro admin [--data-dir DIR] members ls
  macro admin [--data-dir DIR] members rm NAME
  macro admin [--data-dir DIR] nodes ls
  macro admin [--data-dir DIR] nodes rm NAME
  macro admin [--data-dir DIR] nodes rotate-key NAME

It talks to the server through DIR/admin.sock (root only). Flags may come
anywhere. token create prints the token alone on standard output, once:
  TOKEN=$(macro admin token create --tenant alice)

Quotas: --pods bounds the tenant's containers (running or not), --memory
the sum of the memory limits of its running containers (a container
without one counts, and is limited to, 256m), --images the size of its
images' layers, --volumes the sum of the sizes of its volumes (-o size;
a volume without one counts 1g, and an nfs or gfs volume made without one
gets that limit), --volume-count how many volumes it has. Sizes are bytes or a number with k, m, g or t (binary
units, as docker run --memory); 0 lifts a limit. set-quota changes only
the limits it is given.

set-egress switches whether the tenant's pods reach addresses outside
its VPC (IPv4 and IPv6, through their node); it is on for a new tenant.

set-suspend sets the tenant's default auto-suspend rule: its pods without
a kr.suspend label are frozen after that long (10m, 1h) without ingress
traffic, and woken by the next request; a pod opts out with kr.suspend=off.

tenant rm refuses a tenant that has containers; --force stops and removes
them. Either way the tenant's tokens, certificates (revoked), namespaces
and images go with it.

join-token server prints a token that admits another server into the
cluster (macro server --join https://THIS-SERVER:7443 --token TOKEN
--ca-hash HASH, the hash is printed beside it); join-token node one that
admits a node agent. Tokens expire after --ttl (0: never) and can be used
more than once until then; join-token rm withdraws one. members lists the
servers that hold the cluster's state (etcd members); members rm removes
one (its server stops).

nodes ls lists the machines that run pods (macro agent, and each server
that runs one): whether each is ready (its lease is alive) or down, its
zone and architecture, what the pods placed on it request of its CPUs and
memory (requested/total), how many pods it holds of all tenants, its
runtimes and its other labels. nodes rm forgets a node that is down, once
its pods have moved to other nodes; a ready node is refused (stop its
agent first). A forgotten node that starts again joins anew. nodes
rotate-key makes the node replace its WireGuard mesh key; the other nodes
learn the new public key within seconds.

token revoke also revokes the client certificates issued with the token
(kra setup docker): the tenant's docker context stops working.

Flags:
`

// adminOpts are the flags of a command.
type adminOpts struct {
	tenant, description  string
	force                bool
	pods, memory, images string // as given; "" when not given
	volumes, volumeCount string
	ttl                  string
}

// adminMain runs `macro admin ARGS` and returns the exit code.
func adminMain(args []string) int {
	fs := flag.NewFlagSet("macro admin", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "/var/lib/macro", "the server's data directory (its admin socket is DATA-DIR/admin.sock)")
	var o adminOpts
	fs.StringVar(&o.tenant, "tenant", "", "the tenant of a token command")
	fs.StringVar(&o.description, "description", "", "what a new token is for (token create)")
	fs.StringVar(&o.pods, "pods", "", "quota: how many containers the tenant may have (tenant create, set-quota)")
	fs.StringVar(&o.memory, "memory", "", "quota: total memory of the tenant's running containers, e.g. 4g (tenant create, set-quota)")
	fs.StringVar(&o.images, "images", "", "quota: size of the tenant's images, e.g. 10g (tenant create, set-quota)")
	fs.StringVar(&o.volumes, "volumes", "", "quota: total size of the tenant's volumes, e.g. 100g (tenant create, set-quota)")
	fs.StringVar(&o.volumeCount, "volume-count", "", "quota: how many volumes the tenant may have (tenant create, set-quota)")
	fs.StringVar(&o.ttl, "ttl", "24h", "join-token: how long the token admits machines (0: until removed)")
	fs.BoolVar(&o.force, "force", false, "tenant rm: stop and remove the tenant's containers too")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), adminUsage)
		fs.PrintDefaults()
	}
	// Flags may follow the words: parse, take one word, parse the rest.
	var words []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		words = append(words, rest[0])
		rest = rest[1:]
	}
	c := newAdminClient(*dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err := runAdmin(ctx, c, words, o, os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "macro admin: %s\n\n", ue)
		fs.Usage()
		return 2
	default:
		fmt.Fprintf(os.Stderr, "macro admin: %v\n", err)
		return 1
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

func runAdmin(ctx context.Context, c *adminClient, words []string, o adminOpts, stdout, stderr io.Writer) error {
	cmd := strings.Join(words, " ")
	tenant, description := o.tenant, o.description
	needTenant := func() error {
		if tenant == "" {
			return usageError(fmt.Sprintf("%s: --tenant NAME is required", strings.Join(words[:2], " ")))
		}
		return nil
	}
	switch {
	case len(words) == 0:
		return usageError("no command")
	case len(words) == 3 && words[0] == "tenant" && words[1] == "create":
		var q types.Quota
		if err := o.quota(&q); err != nil {
			return err
		}
		var t types.Tenant
		if err := c.call(ctx, http.MethodPost, "/tenants", map[string]any{"name": words[2], "quota": q}, &t); err != nil {
			return err
		}
		if t.Quota == (types.Quota{}) {
			fmt.Fprintf(stdout, "tenant %q created\n", t.Name)
		} else {
			fmt.Fprintf(stdout, "tenant %q created%s\n", t.Name, quotaText(t.Quota))
		}
		fmt.Fprintf(stderr, "next: macro admin token create --tenant %s --data-dir %s\n", t.Name, c.dataDir)
	case len(words) == 3 && words[0] == "tenant" && words[1] == "set-quota":
		if o.pods == "" && o.memory == "" && o.images == "" && o.volumes == "" && o.volumeCount == "" {
			return usageError("tenant set-quota: give at least one of --pods, --memory, --images, --volumes and --volume-count")
		}
		var t types.Tenant
		path := "/tenants/" + url.PathEscape(words[2])
		if err := c.call(ctx, http.MethodGet, path, nil, &t); err != nil {
			return err
		}
		q := t.Quota
		if err := o.quota(&q); err != nil {
			return err
		}
		if err := c.call(ctx, http.MethodPut, path+"/quota", q, &t); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %q:%s\n", t.Name, strings.TrimPrefix(quotaText(t.Quota), ","))
	case len(words) == 4 && words[0] == "tenant" && words[1] == "set-egress":
		on, ok := map[string]bool{"on": true, "off": false}[words[3]]
		if !ok {
			return usageError("tenant set-egress: say on or off, not " + strconv.Quote(words[3]))
		}
		var t types.Tenant
		if err := c.call(ctx, http.MethodPut, "/tenants/"+url.PathEscape(words[2])+"/egress", map[string]bool{"egress": on}, &t); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %q: egress %s\n", t.Name, words[3])
	case len(words) == 4 && words[0] == "tenant" && words[1] == "set-suspend":
		if _, err := api.ParseSuspendRule(words[3]); err != nil {
			return usageError("tenant set-suspend: " + err.Error())
		}
		var t types.Tenant
		if err := c.call(ctx, http.MethodPut, "/tenants/"+url.PathEscape(words[2])+"/suspend", map[string]string{"after": words[3]}, &t); err != nil {
			return err
		}
		if t.SuspendAfter == 0 {
			fmt.Fprintf(stdout, "tenant %q: no default suspend rule\n", t.Name)
		} else {
			fmt.Fprintf(stdout, "tenant %q: pods suspend after %s idle by default\n", t.Name, suspendText(t.SuspendAfter))
		}
	case len(words) == 3 && words[0] == "tenant" && (words[1] == "rm" || words[1] == "remove" || words[1] == "delete"):
		var rm api.Removed
		path := "/tenants/" + url.PathEscape(words[2])
		if o.force {
			path += "?force=1"
		}
		if err := c.call(ctx, http.MethodDelete, path, nil, &rm); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %q removed: %s, %s, %s revoked, %s\n", rm.Tenant,
			plural(rm.Pods, "pod"), plural(rm.Tokens, "token"), plural(rm.Certificates, "certificate"), plural(rm.Images, "image"))
	case cmd == "tenant ls" || cmd == "tenant list":
		var ts []types.Tenant
		if err := c.call(ctx, http.MethodGet, "/tenants", nil, &ts); err != nil {
			return err
		}
		// Each column is what the tenant uses / its limit ("-": none).
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCREATED\tMEMORY\tPODS\tIMAGES\tVOLUMES\tVOLUME COUNT\tSUSPEND")
		count := func(n int64) string { return fmt.Sprint(n) }
		for _, t := range ts {
			var u types.Usage
			used := func(n int64, format func(int64) string) string { return format(n) }
			if err := c.call(ctx, http.MethodGet, "/tenants/"+url.PathEscape(t.Name)+"/usage", nil, &u); err != nil {
				used = func(int64, func(int64) string) string { return "?" } // removed meanwhile
			}
			state := ""
			if t.Deleting {
				state = " (being removed)"
			} else if t.NoEgress {
				state = " (no egress)"
			}
			fmt.Fprintf(tw, "%s%s\t%s\t%s/%s\t%s/%s\t%s/%s\t%s/%s\t%s/%s\t%s\n", t.Name, state, t.Created.UTC().Format(time.RFC3339),
				used(u.MemoryBytes, bytesText), limit(t.Quota.MemoryBytes, bytesText),
				used(int64(u.Pods), count), limit(int64(t.Quota.Pods), count),
				used(u.ImageBytes, bytesText), limit(t.Quota.ImageBytes, bytesText),
				used(u.VolumeBytes, bytesText), limit(t.Quota.VolumeBytes, bytesText),
				used(int64(u.Volumes), count), limit(int64(t.Quota.Volumes), count), suspendText(t.SuspendAfter))
		}
		return tw.Flush()
	case cmd == "token create":
		if err := needTenant(); err != nil {
			return err
		}
		var tok api.NewToken
		if err := c.call(ctx, http.MethodPost, "/tenants/"+url.PathEscape(tenant)+"/tokens", map[string]string{"description": description}, &tok); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "token %s of tenant %q created; it is shown this once:\n", tok.ID, tok.Tenant)
		fmt.Fprintln(stdout, tok.Token)
	case cmd == "token ls" || cmd == "token list":
		if err := needTenant(); err != nil {
			return err
		}
		var toks []api.TokenInfo
		if err := c.call(ctx, http.MethodGet, "/tenants/"+url.PathEscape(tenant)+"/tokens", nil, &toks); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "ID\tCREATED\tLAST USED\tDESCRIPTION")
		for _, t := range toks {
			used := "never"
			if t.LastUsed != nil {
				used = t.LastUsed.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Created.UTC().Format(time.RFC3339), used, t.Description)
		}
		return tw.Flush()
	case len(words) == 3 && words[0] == "token" && (words[1] == "revoke" || words[1] == "rm"):
		if err := needTenant(); err != nil {
			return err
		}
		if err := c.call(ctx, http.MethodDelete, "/tenants/"+url.PathEscape(tenant)+"/tokens/"+url.PathEscape(words[2]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s of tenant %q revoked\n", words[2], tenant)
	case len(words) > 0 && (words[0] == "nodes" || words[0] == "node"):
		return runNodesAdmin(ctx, c, words, stdout)
	case len(words) > 0 && (words[0] == "join-token" || words[0] == "members" || words[0] == "member"):
		return runClusterAdmin(ctx, c, words, o, stdout, stderr)
	default:
		return usageError(fmt.Sprintf("unknown command %q", cmd))
	}
	return nil
}

func limit(n int64, format func(int64) string) string {
	if n == 0 {
		return "-"
	}
	return format(n)
}

// bytesText is a size in a table column: image.HumanSize without the space.
func bytesText(n int64) string { return strings.ReplaceAll(image.HumanSize(n), " ", "") }

// adminClient calls the admin API over DATA-DIR/admin.sock.
type adminClient struct {
	dataDir string
	socket  string
	http    *http.Client
}

func newAdminClient(dataDir string) *adminClient {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	sock := filepath.Join(dataDir, adminSocketName)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &adminClient{dataDir: dataDir, socket: sock, http: &http.Client{Transport: tr}}
}

// call sends a JSON request to the admin API and decodes the answer into
// out (when not nil). Errors read well on their own.
func (c *adminClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://macro-admin"+api.Prefix+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
			return fmt.Errorf("permission denied on %s: run macro admin as root (or as the user that runs the server)", c.socket)
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("cannot reach the server at %s: is `macro server --data-dir %s` running?", c.socket, c.dataDir)
		}
		return fmt.Errorf("cannot reach the server at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &m) == nil && m.Message != "" {
			return errors.New(m.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
		}
	}
	return nil
}

// quota sets the limits of q that were given as flags.
func (o adminOpts) quota(q *types.Quota) error {
	if o.pods != "" {
		n, err := strconv.Atoi(o.pods)
		if err != nil || n < 0 {
			return usageError(fmt.Sprintf("--pods %s: give a number of containers (0: no limit)", o.pods))
		}
		q.Pods = n
	}
	if o.volumeCount != "" {
		n, err := strconv.Atoi(o.volumeCount)
		if err != nil || n < 0 {
			return usageError(fmt.Sprintf("--volume-count %s: give a number of volumes (0: no limit)", o.volumeCount))
		}
		q.Volumes = n
	}
	for _, f := range []struct {
		name, value string
		to          *int64
	}{{"memory", o.memory, &q.MemoryBytes}, {"images", o.images, &q.ImageBytes}, {"volumes", o.volumes, &q.VolumeBytes}} {
		if f.value == "" {
			continue
		}
		n, err := parseSize(f.value)
		if err != nil {
			return usageError(fmt.Sprintf("--%s %s: %v", f.name, f.value, err))
		}
		*f.to = n
	}
	return nil
}

// quotaText shows a quota after a tenant's name: ", quota: 3 pods, ...".
func quotaText(q types.Quota) string {
	var parts []string
	if q.Pods > 0 {
		parts = append(parts, fmt.Sprintf("%d pods", q.Pods))
	}
	if q.MemoryBytes > 0 {
		parts = append(parts, bytesText(q.MemoryBytes)+" memory")
	}
	if q.ImageBytes > 0 {
		parts = append(parts, bytesText(q.ImageBytes)+" images")
	}
	if q.VolumeBytes > 0 {
		parts = append(parts, bytesText(q.VolumeBytes)+" volumes")
	}
	if q.Volumes > 0 {
		parts = append(parts, fmt.Sprintf("%d volumes at most", q.Volumes))
	}
	if len(parts) == 0 {
		return ", no quota"
	}
	return ", quota: " + strings.Join(parts, ", ")
}

// parseSize reads a size as docker run --memory does: bytes, or a number
// with b, k, m, g or t (binary units; "4g", "512MiB", "1.5G" too); 0
// means no limit.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(mult) > math.MaxInt64/2 {
		return 0, errors.New("give a size such as 512m, 4g or 10g (binary units), or 0 for no limit")
	}
	return int64(f * float64(mult)), nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// suspendText is a tenant's default suspend rule as set-suspend takes it.
func suspendText(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
