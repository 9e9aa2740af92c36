package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newSetupCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Set up other tools to use macro",
		Args:  args(cobra.NoArgs),
	}
	var name string
	var use bool
	docker := &cobra.Command{
		Use:   "docker",
		Short: "Install a docker context for your tenant",
		Long: `Get a client certificate for your tenant (POST /apis/macro/v1/certs) and
install it as a docker context named <cluster>.<tenant>, as docker context
create would: the context's metadata in $DOCKER_CONFIG/contexts/meta/ and its
TLS files (ca.pem, cert.pem, key.pem) in $DOCKER_CONFIG/contexts/tls/
(DOCKER_CONFIG defaults to ~/.docker). Then

  docker --context <cluster>.<tenant> ps

works with no other setup. Running it again renews the certificate.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			certs, err := c.CreateCerts(cmd.Context())
			if err != nil {
				return err
			}
			id := &client.Identity{Tenant: certs.Tenant, Cluster: certs.Cluster}
			if id.Tenant == "" {
				if id, err = c.WhoAmI(cmd.Context()); err != nil {
					return err
				}
			}
			if _, err := tls.X509KeyPair([]byte(certs.Cert), []byte(certs.Key)); err != nil {
				return fmt.Errorf("the client certificate from %s: %w", c.Host(), err)
			}
			u, _ := url.Parse(c.Host())
			ctxName := name
			if ctxName == "" {
				cluster := id.Cluster
				if cluster == "" {
					cluster = u.Hostname()
				}
				ctxName = contextName(cluster, id.Tenant)
			}
			ctx := dockerContext{
				Name:        ctxName,
				Host:        "tcp://" + u.Host,
				Description: fmt.Sprintf("macro tenant %s at %s", id.Tenant, c.Host()),
				CA:          []byte(certs.CA),
				Cert:        []byte(certs.Cert),
				Key:         []byte(certs.Key),
			}
			if len(ctx.CA) == 0 {
				// The server's certificate is signed by the CA kra trusts.
				host := c.Host()
				if f := os.Getenv("KR_CA"); f != "" {
					ctx.CA, err = os.ReadFile(f)
				} else if dir, derr := hostDir(host); derr == nil {
					ctx.CA, err = os.ReadFile(filepath.Join(dir, "ca.pem"))
				}
				if err != nil || len(ctx.CA) == 0 {
					return fmt.Errorf("%s sent no CA with the certificate, and kra has none pinned", host)
				}
			}
			dir, err := ctx.write(use)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Docker context %q created for tenant %s (in %s)\n", ctxName, id.Tenant, dir)
			if use {
				fmt.Fprintf(out, "It is now the current context: docker ps\n")
			} else {
				fmt.Fprintf(out, "Use it with: docker --context %s ps\n  or make it the default: docker context use %s\n", ctxName, ctxName)
			}
			return nil
		},
	}
	docker.Flags().StringVar(&name, "context", "", "name of the docker context (default <cluster>.<tenant>)")
	docker.Flags().BoolVar(&use, "use", false, "make it docker's current context")
	cmd.AddCommand(docker)
	return cmd
}

// contextNameRE is what docker accepts as a context name.
var contextNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$`)

// contextName is "<cluster>.<tenant>", with characters docker refuses in a
// context name replaced by "-".
func contextName(cluster, tenant string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < 128 && (r == '_' || r == '.' || r == '+' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return r
			}
			return '-'
		}, s)
	}
	return strings.Trim(clean(cluster), ".-") + "." + clean(tenant)
}

// dockerContext is a docker CLI context with a TLS endpoint.
type dockerContext struct {
	Name, Host, Description string
	CA, Cert, Key           []byte
}

// dockerConfigDir is the docker CLI's configuration directory.
func dockerConfigDir() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no docker configuration directory: set DOCKER_CONFIG or HOME: %w", err)
	}
	return filepath.Join(home, ".docker"), nil
}

// write stores the context as docker context create does (cli/context/store:
// meta/<sha256 of name>/meta.json, tls/<sha256 of name>/docker/*.pem), and
// with use makes it current in config.json. It returns the docker
// configuration directory.
func (c dockerContext) write(use bool) (string, error) {
	if !contextNameRE.MatchString(c.Name) || c.Name == "default" {
		return "", usageError{fmt.Errorf("invalid docker context name %q", c.Name)}
	}
	dir, err := dockerConfigDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(c.Name))
	id := hex.EncodeToString(sum[:])
	meta := map[string]any{
		"Name":     c.Name,
		"Metadata": map[string]any{"Description": c.Description},
		"Endpoints": map[string]any{
			"docker": map[string]any{"Host": c.Host, "SkipTLSVerify": false},
		},
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return "", err
	}
	tlsDir := filepath.Join(dir, "contexts", "tls", id)
	// Old files of a context of that name (another tenant's key) go first.
	if err := os.RemoveAll(tlsDir); err != nil {
		return "", err
	}
	epDir := filepath.Join(tlsDir, "docker")
	if err := os.MkdirAll(filepath.Join(dir, "contexts", "tls"), 0o755); err != nil {
		return "", err
	}
	if err := os.MkdirAll(epDir, 0o700); err != nil {
		return "", err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"ca.pem", c.CA}, {"cert.pem", c.Cert}, {"key.pem", c.Key}} {
		if err := writeFileAtomic(filepath.Join(epDir, f.name), f.data, 0o600); err != nil {
			return "", err
		}
	}
	metaDir := filepath.Join(dir, "contexts", "meta", id)
	if err := os.MkdirAll(metaDir, 0o755); err != nil {
		return "", err
	}
	if err := writeFileAtomic(filepath.Join(metaDir, "meta.json"), b, 0o644); err != nil {
		return "", err
	}
	if use {
		if err := setCurrentContext(dir, c.Name); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// setCurrentContext sets "currentContext" in the docker CLI's config.json,
// keeping everything else in it (credentials, plugins, ...) as it was.
func setCurrentContext(dir, name string) error {
	p := filepath.Join(dir, "config.json")
	cfg := map[string]json.RawMessage{}
	mode := os.FileMode(0o600)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if st, err := os.Stat(p); err == nil {
			mode = st.Mode().Perm()
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	v, _ := json.Marshal(name)
	cfg["currentContext"] = v
	out, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeFileAtomic(p, append(out, '\n'), mode)
}
