package main

import (
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/image"
	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newImagesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "images",
		Aliases: []string{"image"},
		Short:   "List images",
		Args:    args(cobra.NoArgs),
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List your images",
		Args:    args(cobra.NoArgs),
	}
	out := outputFlag(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		var list []image.Summary
		err := a.withDocker(cmd.Context(), func(c *client.Client) error {
			var err error
			list, err = c.Images(cmd.Context(), false)
			return err
		})
		if err != nil {
			return err
		}
		sort.SliceStable(list, func(i, j int) bool { return list[i].Created > list[j].Created })
		if *out == "json" {
			return printJSON(cmd.OutOrStdout(), list)
		}
		var rows [][]string
		for _, im := range list {
			created := formatTime(time.Unix(im.Created, 0))
			tags := im.RepoTags
			if len(tags) == 0 {
				tags = []string{"<none>:<none>"}
			}
			for _, t := range tags {
				repo, tag := splitTag(t)
				rows = append(rows, []string{repo, tag, shortID(im.ID), created, formatSize(im.Size)})
			}
		}
		return printTable(cmd.OutOrStdout(), []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}, rows)
	}
	cmd.AddCommand(ls)
	return cmd
}

// splitTag splits "repo:tag" at the tag's colon (not a registry port's).
func splitTag(ref string) (repo, tag string) {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.ContainsRune(ref[i:], '/') {
		return ref, "<none>"
	}
	return ref[:i], ref[i+1:]
}
