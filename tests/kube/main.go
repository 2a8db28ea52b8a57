// Command kubestack bundles the pieces of a Kubernetes control plane that the
// harden integration tests need into one static binary:
//
//	kubestack etcd                    [--watch-pid PID] [etcd flags]
//	kubestack kube-apiserver          [--watch-pid PID] [kube-apiserver flags]
//	kubestack kube-controller-manager [--watch-pid PID] [kube-controller-manager flags]
//	kubestack kubectl                 [kubectl flags]  (or kubestack invoked as "kubectl")
//
// One binary instead of three keeps the (long) Go build and the cache simple:
// the three programs share almost all of their dependencies.
//
// --watch-pid (or KUBESTACK_WATCH_PID) makes the process exit as soon as the
// given PID is gone, so a pytest that is killed with SIGKILL never leaves a
// control plane running in the background.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // CronJob time zone support, as in the upstream mains

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

const usage = `usage: kubestack <etcd|kube-apiserver|kube-controller-manager|kubectl> [--watch-pid PID] [flags...]
`

func main() {
	// Multi-call: a link named kubectl (cluster.py makes one beside the
	// binary) runs kubectl; so does "kubestack kubectl ...". kubectl takes no
	// --watch-pid: it is a short-lived client.
	if filepath.Base(os.Args[0]) == "kubectl" {
		runKubectl()
		return
	}
	if len(os.Args) >= 2 && os.Args[1] == "kubectl" {
		os.Args = os.Args[1:]
		runKubectl()
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	sub := os.Args[1]
	args, watchPID, err := extractWatchPID(os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubestack: %v\n", err)
		os.Exit(2)
	}
	if watchPID > 0 {
		go watchParent(watchPID)
	}

	switch sub {
	case "etcd":
		os.Exit(runEtcd(args))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "version", "--version":
		fmt.Println("kubestack (kubernetes " + kubernetesVersion() + ")")
	default:
		fmt.Fprintf(os.Stderr, "kubestack: unknown subcommand %q\n%s", sub, usage)
		os.Exit(2)
	}
}

// extractWatchPID removes --watch-pid[=]PID from args (the upstream commands
// would reject the unknown flag) and falls back to $KUBESTACK_WATCH_PID.
func extractWatchPID(args []string) ([]string, int, error) {
	value := os.Getenv("KUBESTACK_WATCH_PID")
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--watch-pid":
			if i+1 >= len(args) {
				return nil, 0, fmt.Errorf("--watch-pid needs a value")
			}
			value = args[i+1]
			i++
		case strings.HasPrefix(a, "--watch-pid="):
			value = strings.TrimPrefix(a, "--watch-pid=")
		default:
			out = append(out, a)
		}
	}
	if value == "" {
		return out, 0, nil
	}
	pid, err := strconv.Atoi(value)
	if err != nil || pid <= 0 {
		return nil, 0, fmt.Errorf("invalid --watch-pid %q", value)
	}
	return out, pid, nil
}

// watchParent exits the process once pid no longer exists. Signal 0 does the
// existence check without delivering anything; EPERM means "exists, not ours".
// os.Exit (rather than a graceful shutdown) is fine: everything the test
// cluster owns lives in a throwaway directory.
func watchParent(pid int) {
	for {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			fmt.Fprintf(os.Stderr, "kubestack: watched pid %d is gone, exiting\n", pid)
			os.Exit(0)
		}
		time.Sleep(time.Second)
	}
}
