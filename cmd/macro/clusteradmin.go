package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/macro-cloud/macro/api"
)

// runClusterAdmin runs the join-token and members commands of macro admin.
func runClusterAdmin(ctx context.Context, c *adminClient, words []string, o adminOpts, stdout, stderr io.Writer) error {
	cmd := strings.Join(words, " ")
	switch {
	case cmd == "join-token server" || cmd == "join-token node":
		var tok api.NewJoinToken
		if err := c.call(ctx, http.MethodPost, "/join-tokens", map[string]string{"kind": words[1], "ttl": o.ttl}, &tok); err != nil {
			return err
		}
		expires := "never expires"
		if tok.Expires != nil {
			expires = "expires " + tok.Expires.Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "%s join token %s created (%s); it is shown this once:\n", tok.Kind, tok.ID, expires)
		fmt.Fprintln(stdout, tok.Token)
		if tok.Kind == "server" {
			fmt.Fprintf(stderr, "on the new server:\n  macro server --join https://THIS-SERVER:7443 --token TOKEN --ca-hash %s\n", tok.CAHash)
		} else {
			fmt.Fprintf(stderr, "on the new node:\n  macro agent --server https://THIS-SERVER:7443 --token TOKEN --ca-hash %s\n", tok.CAHash)
		}
	case cmd == "join-token ls" || cmd == "join-token list":
		var toks []api.JoinTokenInfo
		if err := c.call(ctx, http.MethodGet, "/join-tokens", nil, &toks); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tCREATED\tEXPIRES")
		for _, t := range toks {
			exp := "never"
			if t.Expires != nil {
				exp = t.Expires.Format(time.RFC3339)
				if !t.Expires.After(time.Now()) {
					exp += " (expired)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Created.Format(time.RFC3339), exp)
		}
		return tw.Flush()
	case len(words) == 3 && words[0] == "join-token" && (words[1] == "rm" || words[1] == "remove" || words[1] == "revoke"):
		if err := c.call(ctx, http.MethodDelete, "/join-tokens/"+url.PathEscape(words[2]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "join token %s removed\n", words[2])
	default:
		return usageError(fmt.Sprintf("unknown command %q", cmd))
	}
	return nil
}
