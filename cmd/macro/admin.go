package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/types"
)

// adminSocketName is the admin API's unix socket in the data directory.
const adminSocketName = "admin.sock"

const adminUsage = `macro admin: manage tenants and access tokens of the server on this machine

Usage:
  macro admin [--data-dir DIR] tenant create NAME
  macro admin [--data-dir DIR] tenant ls
  macro admin [--data-dir DIR] token create --tenant NAME [--description TEXT]
  macro admin [--data-dir DIR] token ls --tenant NAME
  macro admin [--data-dir DIR] token revoke --tenant NAME ID

It talks to the server through DIR/admin.sock (root only). Flags may come
anywhere. token create prints the token alone on standard output, once:
  TOKEN=$(macro admin token create --tenant alice)

Flags:
`

// adminMain runs `macro admin ARGS` and returns the exit code.
func adminMain(args []string) int {
	fs := flag.NewFlagSet("macro admin", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "/var/lib/macro", "the server's data directory (its admin socket is DATA-DIR/admin.sock)")
	tenant := fs.String("tenant", "", "the tenant of a token command")
	description := fs.String("description", "", "what a new token is for (token create)")
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := runAdmin(ctx, c, words, *tenant, *description, os.Stdout, os.Stderr)
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

func runAdmin(ctx context.Context, c *adminClient, words []string, tenant, description string, stdout, stderr io.Writer) error {
	cmd := strings.Join(words, " ")
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
		var t types.Tenant
		if err := c.call(ctx, http.MethodPost, "/tenants", map[string]string{"name": words[2]}, &t); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %q created\n", t.Name)
		fmt.Fprintf(stderr, "next: macro admin token create --tenant %s --data-dir %s\n", t.Name, c.dataDir)
	case cmd == "tenant ls" || cmd == "tenant list":
		var ts []types.Tenant
		if err := c.call(ctx, http.MethodGet, "/tenants", nil, &ts); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCREATED\tMEMORY\tPODS\tIMAGES")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Created.UTC().Format(time.RFC3339),
				limit(t.Quota.MemoryBytes, bytesText), limit(int64(t.Quota.Pods), func(n int64) string { return fmt.Sprint(n) }), limit(t.Quota.ImageBytes, bytesText))
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

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

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
