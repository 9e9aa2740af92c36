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
	"github.com/macro-cloud/macro/store"
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
			kind := t.Kind
			if t.Node != "" {
				kind += " (credential of " + t.Node + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, kind, t.Created.Format(time.RFC3339), exp)
		}
		return tw.Flush()
	case len(words) == 3 && words[0] == "join-token" && (words[1] == "rm" || words[1] == "remove" || words[1] == "revoke"):
		if err := c.call(ctx, http.MethodDelete, "/join-tokens/"+url.PathEscape(words[2]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "join token %s removed\n", words[2])
	case cmd == "members ls" || cmd == "members list" || cmd == "member ls":
		var ms []struct {
			store.MemberInfo
			Control bool `json:"control"`
		}
		if err := c.call(ctx, http.MethodGet, "/members", nil, &ms); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "NAME	ID	PEER URL	ROLE")
		for _, m := range ms {
			name := m.Name
			if name == "" {
				name = "(not started yet)"
			}
			if m.Self {
				name += " *"
			}
			var role []string
			if m.Leader {
				role = append(role, "raft leader")
			}
			if m.Learner {
				role = append(role, "learner")
			}
			if m.Control {
				role = append(role, "control loop")
			}
			fmt.Fprintf(tw, "%s\t%x\t%s\t%s\n", name, m.ID, strings.Join(m.PeerURLs, ","), strings.Join(role, ", "))
		}
		return tw.Flush()
	case len(words) == 3 && (words[0] == "members" || words[0] == "member") && (words[1] == "rm" || words[1] == "remove"):
		var m store.MemberInfo
		if err := c.call(ctx, http.MethodDelete, "/members/"+url.PathEscape(words[2]), nil, &m); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "member %s (%x) removed\n", m.Name, m.ID)
	default:
		return usageError(fmt.Sprintf("unknown command %q", cmd))
	}
	return nil
}
