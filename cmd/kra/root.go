package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

// app is what every command shares: where macro is, the token, and how to
// trust the server.
type app struct {
	stdin  io.Reader
	stderr io.Writer

	cfg       config
	cfgErr    error
	cfgLoaded bool
}

func (a *app) config() (config, error) {
	if !a.cfgLoaded {
		a.cfg, a.cfgErr = loadConfig()
		a.cfgLoaded = true
	}
	return a.cfg, a.cfgErr
}

// host is the macro host: flag (login's --host), KR_HOST, the config file,
// or the default, in that order.
func (a *app) host(flag string) (string, error) {
	h := flag
	if h == "" {
		h = os.Getenv("KR_HOST")
	}
	if h == "" {
		c, err := a.config()
		if err != nil {
			return "", err
		}
		h = c.Host
	}
	if h == "" {
		h = client.DefaultHost
	}
	return client.NormalizeHost(h)
}

// token is KR_ACCESS_TOKEN, else the token `kra login` stored for host.
func (a *app) token(host string) (string, error) {
	if t := os.Getenv("KR_ACCESS_TOKEN"); t != "" {
		return t, nil
	}
	c, err := a.config()
	if err != nil {
		return "", err
	}
	if c.Token == "" {
		return "", client.ErrNoToken
	}
	if h, err := client.NormalizeHost(c.Host); err == nil && h != host {
		return "", &otherHostError{host: host, loggedIn: h}
	}
	return c.Token, nil
}

// roots is the CA pool that may sign host's certificate: the file caFile
// (login's --ca), KR_CA, the CA pinned by `kra login`, or the system's
// pool (nil), in that order.
func (a *app) roots(host, caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		caFile = os.Getenv("KR_CA")
	}
	if caFile == "" {
		dir, err := hostDir(host)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, "ca.pem")
		if _, err := os.Stat(p); err != nil {
			return nil, nil
		}
		caFile = p
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle: %w", err)
	}
	certs, err := parseCABundle(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caFile, err)
	}
	return certPool(certs), nil
}

// native returns a client of the native API with the token.
func (a *app) native() (*client.Client, error) {
	host, err := a.host("")
	if err != nil {
		return nil, err
	}
	token, err := a.token(host)
	if err != nil {
		return nil, err
	}
	roots, err := a.roots(host, "")
	if err != nil {
		return nil, err
	}
	return client.New(host, client.Options{Token: token, RootCAs: roots, UserAgent: userAgent})
}

// withDocker runs fn with a client that holds a client certificate for the
// Docker API: the one kra stored for this host and token, or a new one
// from POST /certs. When the server refuses a stored certificate (revoked,
// or the server's CA changed), kra fetches a new one and tries once more.
func (a *app) withDocker(ctx context.Context, fn func(*client.Client) error) error {
	nc, err := a.native()
	if err != nil {
		return err
	}
	host := nc.Host()
	token, _ := a.token(host)
	roots, _ := a.roots(host, "")
	cert, cached := cachedCert(host, token)
	for attempt := 0; ; attempt++ {
		if cert == nil {
			certs, err := nc.CreateCerts(ctx)
			if err != nil {
				return err
			}
			c, err := tls.X509KeyPair([]byte(certs.Cert), []byte(certs.Key))
			if err != nil {
				return fmt.Errorf("the client certificate from %s: %w", host, err)
			}
			cert = &c
			if err := saveCert(host, token, []byte(certs.Cert), []byte(certs.Key)); err != nil {
				return fmt.Errorf("storing the client certificate: %w", err)
			}
			cached = false
		}
		dc, err := client.New(host, client.Options{Token: token, RootCAs: roots, ClientCert: cert, UserAgent: userAgent})
		if err != nil {
			return err
		}
		err = fn(dc)
		var refused *client.CertRefusedError
		if cached && attempt == 0 && (errors.As(err, &refused) || errors.Is(err, client.ErrUnauthorized) || errors.Is(err, client.ErrForbidden)) {
			forgetCert(host)
			cert = nil
			continue
		}
		return err
	}
}

const userAgent = "kra"

// otherHostError says that the stored token belongs to another host: kra
// never sends it anywhere else.
type otherHostError struct{ host, loggedIn string }

func (e *otherHostError) Error() string {
	return fmt.Sprintf("not logged in to %s (the stored token is for %s): run `kra login <token>` or set KR_ACCESS_TOKEN", e.host, e.loggedIn)
}

func (e *otherHostError) Unwrap() error { return client.ErrNoToken }

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "kra",
		Short: "kra is the command line of a macro cloud",
		Long: `kra is the command line of a macro cloud, beside the docker CLI.

  kra login <token>     store your access token (and trust the server's CA)
  kra setup docker      install a docker context: docker --context <cluster>.<tenant> ps
  kra ps                list your pods
  kra push              push the images of compose.yaml to your registry
  kra up -d             deploy compose.yaml into a namespace (kra down removes it)

Environment:
  KR_HOST          the API port of macro, https://HOST:PORT (default ` + client.DefaultHost + `)
  KR_ACCESS_TOKEN  an access token; overrides the one kra login stored
  KR_CA            a PEM file of the CA that signs macro's certificates

kra keeps its configuration in $XDG_CONFIG_HOME/kra (default ~/.config/kra).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newLoginCmd(a),
		newLogoutCmd(a),
		newSetupCmd(a),
		newPsCmd(a),
		newPodsCmd(a),
		newImagesCmd(a),
		newNsCmd(a),
		newNodesCmd(a),
		newVPCCmd(a),
		newOverlaysCmd(a),
		newUpCmd(a),
		newDownCmd(a),
		newIngressCmd(a),
		newDomainsCmd(a),
		newVolumeCmd(a),
		newPushCmd(a),
		newCompletionCmd(),
	)
	return root
}

// args wraps a cobra argument check so that its error is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}
