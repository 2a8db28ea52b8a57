package main

// kubectl is built into kubestack from the same pinned Kubernetes release, so
// the benchmarks compare harden with the kubectl of the cluster they run
// against, and a fresh machine has it without a download.
//
// The body follows upstream's own main, k8s.io/kubernetes
// cmd/kubectl/kubectl.go (v1.36.3): verbosity is parsed before the command is
// built, errors are printed by util.CheckErr.

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Client auth plugins, as upstream's kubectl main imports them.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

// runKubectl runs kubectl with os.Args as kubectl would see them (os.Args[0]
// is the program name): NewDefaultKubectlCommand and cobra both read os.Args.
func runKubectl() {
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
