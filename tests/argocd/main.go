// Command argocd is Argo CD's multi-call binary, rebuilt here from the
// published Go module so the harden integration tests can run Argo CD's own
// components against the test API server:
//
//	argocd-application-controller [flags]   (or: argocd argocd-application-controller [flags])
//	argocd-repo-server [flags]
//
// As upstream (cmd/main.go of github.com/argoproj/argo-cd/v3 v3.5.7), the
// binary's base name selects the component, and ARGOCD_BINARY_NAME overrides
// it. A first argument naming a component is accepted as well, so the tests
// need no symlinks. Only the components the tests run are linked in: each one
// more adds minutes to the cold build.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/log"
)

// Upstream cmd/main.go reads the component from this variable first.
const binaryNameEnv = "ARGOCD_BINARY_NAME"

var components = map[string]func() *cobra.Command{
	common.CommandApplicationController: appcontroller.NewCommand,
	common.CommandRepoServer:            reposerver.NewCommand,
}

func init() {
	// Upstream does the same so klog (client-go) logs in Argo CD's format and level.
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	// Upstream's main calls grpc.DisableSRVLookups() (util/grpc/srvworkaround.go) to undo
	// google.golang.org/grpc/balancer/grpclb, which some package of the full binary links in and
	// which turns DNS SRV lookups on. Neither component linked here pulls grpclb in, so the lookups
	// stay off, and that call would panic on finding them off already.
	name := filepath.Base(os.Args[0])
	if val := os.Getenv(binaryNameEnv); val != "" {
		name = val
	}
	args := os.Args[1:]
	if _, ok := components[name]; !ok && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	newCommand, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: argocd <%s|%s> [flags...]\n",
			common.CommandApplicationController, common.CommandRepoServer)
		os.Exit(2)
	}
	command := newCommand()
	command.SetArgs(args)
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
