package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/nodeproto"
)

// `macro volfs-shim STATEDIR` (hidden) is the process that holds one
// remote volume's FUSE mount while the agent that started it restarts
// (agent/volshim.go). It speaks the node protocol with the credentials the
// agent wrote into STATEDIR/config.json.
func volfsShimMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: macro volfs-shim STATEDIR (started by the agent)")
		return 2
	}
	return agent.VolumeShimMain(args[0], func(b []byte) (http.RoundTripper, error) {
		var cr nodeproto.Credentials
		if err := json.Unmarshal(b, &cr); err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		cli, err := nodeproto.NewClientFrom(cr, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		if err != nil {
			return nil, err
		}
		return cli.VolumeTransport(), nil
	})
}

// volumeShim is Config.VolumeShim for a node client: this binary, re-run
// as volfs-shim, with the client's credentials.
func volumeShim(cli *nodeproto.Client) (argv []string, creds []byte, ok bool) {
	if cli == nil {
		return nil, nil, false
	}
	cr, ok := cli.Credentials()
	if !ok {
		return nil, nil, false
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, false
	}
	b, err := json.Marshal(cr)
	if err != nil {
		return nil, nil, false
	}
	return []string{exe, "volfs-shim"}, b, true
}
