package main

import (
	"github.com/spf13/cobra"
)

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a completion script for your shell. For example:

  source <(kra completion bash)                               # this shell
  kra completion bash > /etc/bash_completion.d/kra            # every bash
  kra completion zsh > "${fpath[1]}/_kra"                      # zsh
  kra completion fish > ~/.config/fish/completions/kra.fish   # fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      args(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		RunE: func(cmd *cobra.Command, a []string) error {
			out := cmd.OutOrStdout()
			switch a[0] {
			case "bash":
				return cmd.Root().GenBashCompletionV2(out, true)
			case "zsh":
				return cmd.Root().GenZshCompletion(out)
			default:
				return cmd.Root().GenFishCompletion(out, true)
			}
		},
	}
}
