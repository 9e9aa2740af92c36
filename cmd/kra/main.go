// Command kra is macro's CLI for tenants: it logs in with an access token,
// installs a docker context for the Docker CLI (`kra setup docker`), and
// shows pods, images and namespaces. It talks to macro's tenant-facing API
// port through the client package: the native API with the token, the
// Docker API with a client certificate it fetches with the token.
//
// Configuration, as Kraud's kra: KR_HOST (https://HOST:PORT, default
// https://localhost:7443) and KR_ACCESS_TOKEN, or what `kra login` stored;
// KR_CA names a CA bundle to trust.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/macro-cloud/macro/client"
)

func main() {
	os.Exit(Main())
}

// Main runs kra with os.Args and returns its exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(&app{stdin: stdin, stderr: stderr})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return 130
	}
	fmt.Fprintf(stderr, "kra: %s\n", explain(err))
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	return 1
}

// usageError is a mistake in how a command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// explain turns an error into what a user should read.
func explain(err error) string {
	var unreachable *client.UnreachableError
	var untrusted *client.UntrustedError
	var refused *client.CertRefusedError
	var apiErr *client.Error
	var other *otherHostError
	switch {
	case errors.As(err, &other):
		return other.Error()
	case errors.Is(err, client.ErrNoToken):
		return "not logged in: run `kra login <token>` or set KR_ACCESS_TOKEN"
	case errors.As(err, &unreachable):
		return fmt.Sprintf("cannot reach %s: %s — is macro running? (KR_HOST)", unreachable.Host, unreachable.Reason)
	case errors.As(err, &untrusted):
		return fmt.Sprintf("%s\n  trust macro's CA with `kra login --ca FILE <token>` or KR_CA=FILE,\n  or pin it on first use with `kra login --insecure-skip-verify <token>`", untrusted.Error())
	case errors.As(err, &refused):
		return fmt.Sprintf("%s refused kra's client certificate: run `kra login <token>` again", refused.Host)
	case errors.As(err, &apiErr) && apiErr.Status == 401:
		return fmt.Sprintf("the token was refused by %s: revoked or mistyped", apiErr.Host)
	case errors.As(err, &apiErr) && apiErr.Status == 429:
		wait := ""
		if apiErr.RetryAfter > 0 {
			wait = fmt.Sprintf(" in %d s", apiErr.RetryAfter)
		}
		return fmt.Sprintf("%s refuses this address for a while after too many failed logins: try again%s", apiErr.Host, wait)
	case errors.As(err, &apiErr) && apiErr.Status == 403:
		return fmt.Sprintf("%s: %s", apiErr.Host, apiErr.Error())
	}
	return strings.TrimSpace(err.Error())
}
