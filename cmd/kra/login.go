package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newLoginCmd(a *app) *cobra.Command {
	var host, caFile string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "login <token>",
		Short: "Check an access token and store it",
		Long: `Check an access token with the server (GET /apis/macro/v1/whoami) and store
the host and the token for the next commands. "-" reads the token from
standard input (keeps it out of the shell's history).

The token is stored in $XDG_CONFIG_HOME/kra/config.json (default
~/.config/kra/config.json) with mode 0600; kra uses no OS keyring, which
servers and CI machines do not have. KR_ACCESS_TOKEN overrides it.

macro signs its certificates with its own CA. Trust it with --ca FILE (or
KR_CA=FILE), or, on a first login, with --insecure-skip-verify: kra then
fetches the CA bundle over an unverified connection, prints its SHA-256
fingerprint, checks the token with the CA it got, and pins it: later
commands verify the server with that CA only. Compare the fingerprint with
the server's, on the server:

  openssl x509 -noout -fingerprint -sha256 -in DATA-DIR/ca/ca.pem The CA is kept beside the config, in hosts/HOST_PORT/ca.pem.`,
		Example: `  kra login --host https://macro.example:7443 --insecure-skip-verify mt_…
  kra login --ca ca.pem "$TOKEN"
  echo "$TOKEN" | kra login -`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			token := args[0]
			if token == "-" {
				t, err := readToken(a.stdin)
				if err != nil {
					return err
				}
				token = t
			}
			return a.login(cmd.Context(), cmd.OutOrStdout(), host, token, caFile, insecure)
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "the API port of macro, https://HOST:PORT (default $KR_HOST, then "+client.DefaultHost+")")
	cmd.Flags().StringVar(&caFile, "ca", "", "PEM file of the CA that signs the server's certificate (default $KR_CA, then the pinned CA)")
	cmd.Flags().BoolVar(&insecure, "insecure-skip-verify", false, "fetch the server's CA without verifying it, and pin it (trust on first use)")
	return cmd
}

func readToken(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the token from standard input: %w", err)
	}
	t := strings.TrimSpace(line)
	if t == "" {
		return "", usageError{errors.New("no token on standard input")}
	}
	return t, nil
}

func (a *app) login(ctx context.Context, out io.Writer, hostFlag, token, caFile string, insecure bool) error {
	token = strings.TrimSpace(token)
	if token == "" {
		return usageError{errors.New("empty token")}
	}
	if insecure && caFile != "" {
		return usageError{errors.New("--ca and --insecure-skip-verify exclude each other")}
	}
	host, err := a.host(hostFlag)
	if err != nil {
		return err
	}
	var roots *x509.CertPool
	var pin []byte // a CA bundle to pin once the token is good
	switch {
	case insecure:
		ic, err := client.New(host, client.Options{InsecureSkipVerify: true, UserAgent: userAgent})
		if err != nil {
			return err
		}
		bundle, err := ic.CA(ctx)
		if err != nil {
			if errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("%s has no CA endpoint (GET %s/ca): pass its CA with --ca FILE", host, client.APIPrefix)
			}
			return fmt.Errorf("fetching the CA of %s: %w", host, err)
		}
		certs, err := parseCABundle(bundle)
		if err != nil {
			return fmt.Errorf("the CA bundle of %s: %w", host, err)
		}
		for _, c := range certs {
			fmt.Fprintf(out, "CA of %s: %s\n  SHA-256 fingerprint %s\n", host, c.Subject, fingerprint(c))
		}
		if dir, err := hostDir(host); err == nil {
			if old, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err == nil && !bytes.Equal(old, bundle) {
				fmt.Fprintf(a.stderr, "WARNING: this is not the CA kra pinned for %s before: compare the fingerprint with the server's\n", host)
			}
		}
		roots, pin = certPool(certs), bundle
	case caFile != "":
		b, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("reading the CA bundle: %w", err)
		}
		certs, err := parseCABundle(b)
		if err != nil {
			return fmt.Errorf("%s: %w", caFile, err)
		}
		roots, pin = certPool(certs), b
	default:
		if roots, err = a.roots(host, ""); err != nil {
			return err
		}
	}
	c, err := client.New(host, client.Options{Token: token, RootCAs: roots, UserAgent: userAgent})
	if err != nil {
		return err
	}
	id, err := c.WhoAmI(ctx)
	if err != nil {
		var untrusted *client.UntrustedError
		if insecure && errors.As(err, &untrusted) {
			return fmt.Errorf("%s: its certificate is not signed by the CA it serves: %w", host, err)
		}
		return err
	}
	if pin != nil {
		dir, err := hostDir(host)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, "ca.pem"), pin, 0o644); err != nil {
			return fmt.Errorf("pinning the CA: %w", err)
		}
		fmt.Fprintf(out, "Pinned this CA for %s in %s\n", host, filepath.Join(dir, "ca.pem"))
	}
	if old, _ := a.config(); old.Token != token {
		forgetCert(host)
	}
	if err := saveConfig(config{Host: host, Token: token}); err != nil {
		return fmt.Errorf("storing the token: %w", err)
	}
	p, _ := configPath()
	fmt.Fprintf(out, "Logged in to %s as tenant %s (token stored in %s)\n", host, id.Tenant, p)
	return nil
}

func newLogoutCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the stored token",
		Long: `Forget the token that kra login stored, and kra's client certificate.
The pinned CA stays, so a later kra login needs no --ca. KR_ACCESS_TOKEN, if
set, is not affected.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.config()
			if err != nil {
				return err
			}
			if c.Token == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "Not logged in")
				return nil
			}
			if err := forgetCert(c.Host); err != nil {
				return err
			}
			if err := saveConfig(config{Host: c.Host}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged out of %s\n", c.Host)
			return nil
		},
	}
}
