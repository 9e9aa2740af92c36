package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

// outputFlag adds -o table|json to a listing command.
func outputFlag(cmd *cobra.Command) *string {
	o := new(string)
	cmd.Flags().StringVarP(o, "output", "o", "table", "output format: table or json")
	cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp
	})
	return o
}

func checkOutput(o string) error {
	switch o {
	case "table", "json":
		return nil
	}
	return usageError{fmt.Errorf("invalid output format %q: use table or json", o)}
}

// printJSON writes v as indented JSON; a nil slice is written as [].
func printJSON(w io.Writer, v any) error {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
		v = []struct{}{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// nativeRun is the RunE of a command that reads one thing with the native
// client (fetch, given the command's arguments) and prints it as JSON with
// -o json (out), else as table writes it.
func nativeRun[T any](a *app, out *string, fetch func(ctx context.Context, c *client.Client, args []string) (T, error), table func(w io.Writer, v T) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		c, err := a.native()
		if err != nil {
			return err
		}
		v, err := fetch(cmd.Context(), c, args)
		if err != nil {
			return err
		}
		if *out == "json" {
			return printJSON(cmd.OutOrStdout(), v)
		}
		return table(cmd.OutOrStdout(), v)
	}
}

// table writes rows under a header, in columns as docker does.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// formatTime is how tables show a moment: local time to the second.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// formatSize prints bytes as docker does (decimal units, 3 significant digits).
func formatSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
