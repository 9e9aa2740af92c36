package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/delta"
)

// volumeSyncCommands are `kra volume export` and `kra volume import`: a
// volume to and from an encrypted chunk store in a directory (a removable
// drive), through the delta-sync engine's HTTP transport. kra holds the
// store; only the chunks one side lacks cross the wire, either way.
func volumeSyncCommands(a *app) []*cobra.Command {
	var exportKey, importKey string
	export := &cobra.Command{
		Use:   "export NAME DIR --key-file FILE",
		Short: "Export a volume to a directory, encrypted with your key",
		Long: `Export copies the files of volume NAME into DIR (a removable drive, say),
encrypted (AES-256-GCM) with a key derived from the contents of FILE, which
you keep: without it the export cannot be read. DIR holds one volume's latest
export; exporting again into it writes only the chunks that changed, and
removes those no longer needed. Make a key file once with
  head -c 32 /dev/urandom > volume.key`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			name, dir := argv[0], argv[1]
			key, err := readKeyFile(exportKey)
			if err != nil {
				return err
			}
			remote, err := a.volumeRemote(name)
			if err != nil {
				return err
			}
			s, err := delta.OpenStore(dir, key, true)
			if err != nil {
				return err
			}
			st, err := delta.Sync(cmd.Context(), remote, s)
			if err != nil {
				return volumeSyncError(name, err)
			}
			n, size := s.Written()
			_, recv := remote.Bytes()
			fmt.Fprintf(cmd.OutOrStdout(), "exported volume %s to %s: %d files, %s; %d new chunks written (%s), %s received\n",
				name, dir, st.Files, formatSize(st.Bytes), n, formatSize(size), formatSize(recv))
			return nil
		},
	}
	export.Flags().StringVar(&exportKey, "key-file", "", "the file whose contents are the key (required)")
	export.MarkFlagRequired("key-file")

	imp := &cobra.Command{
		Use:   "import DIR NAME --key-file FILE",
		Short: "Import a volume from a directory that kra volume export wrote",
		Long: `Import makes volume NAME hold the files of the export in DIR, read with the
key file it was made with. Only the chunks the volume lacks are sent. Every
chunk is authenticated and hashed, and the volume switches to the new files
at once, at the end: an import that fails or is cut short leaves the volume
as it was (run it again: what was sent is not sent twice). The volume must
exist (docker volume create NAME) and no running container may mount it.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			dir, name := argv[0], argv[1]
			key, err := readKeyFile(importKey)
			if err != nil {
				return err
			}
			s, err := delta.OpenStore(dir, key, false)
			if err != nil {
				return err
			}
			remote, err := a.volumeRemote(name)
			if err != nil {
				return err
			}
			st, err := delta.Sync(cmd.Context(), s, remote)
			if err != nil {
				return volumeSyncError(name, err)
			}
			sent, _ := remote.Bytes()
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s into volume %s: %d files, %s; %d chunks sent (%s), %s in all\n",
				dir, name, st.Files, formatSize(st.Bytes), st.SentChunks, formatSize(st.SentBytes), formatSize(sent))
			return nil
		},
	}
	imp.Flags().StringVar(&importKey, "key-file", "", "the file whose contents are the key (required)")
	imp.MarkFlagRequired("key-file")
	return []*cobra.Command{export, imp}
}

func readKeyFile(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	return b, nil
}

// volumeRemote is the engine's client for a volume's data on the server,
// with the token and the CA kra trusts.
func (a *app) volumeRemote(name string) (*delta.Remote, error) {
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
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	tr.Proxy = http.ProxyFromEnvironment
	return &delta.Remote{
		URL:    host + client.APIPrefix + "/volumes/" + url.PathEscape(name) + "/data",
		Client: &http.Client{Transport: tr},
		Header: http.Header{"Authorization": {"Bearer " + token}, "User-Agent": {userAgent}},
	}, nil
}

func volumeSyncError(name string, err error) error {
	var he *delta.HTTPError
	var ue *url.Error
	var unknownCA x509.UnknownAuthorityError
	switch {
	case errors.As(err, &he) && he.Status == http.StatusUnauthorized:
		return errors.New("the token was refused: revoked or mistyped")
	case errors.As(err, &he):
		return errors.New(he.Message)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%v\n  trust macro's CA with `kra login --ca FILE <token>` or KR_CA=FILE", err)
	case errors.As(err, &ue) && !errors.Is(err, context.Canceled):
		u, _ := url.Parse(ue.URL)
		reason := ue.Err.Error()
		var op *net.OpError
		if errors.As(ue.Err, &op) {
			reason = op.Err.Error()
			if errors.Is(op.Err, syscall.ECONNREFUSED) {
				reason = "connection refused"
			}
		}
		return fmt.Errorf("cannot reach https://%s: %s — is macro running? (KR_HOST)", u.Host, reason)
	}
	return fmt.Errorf("volume %s: %w", name, err)
}
