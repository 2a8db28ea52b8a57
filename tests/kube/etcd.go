package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/version"
)

// runEtcd starts a single-member embedded etcd (the same server code the
// pinned Kubernetes release is tested against) and blocks until it fails or
// receives SIGTERM/SIGINT. Only the handful of flags the test harness needs
// are supported; everything is expected to listen on loopback.
func runEtcd(args []string) int {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "etcd data directory (required)")
	name := fs.String("name", "kubestack", "member name")
	listenClient := fs.String("listen-client-urls", "http://127.0.0.1:2379", "comma-separated client URLs to listen on")
	advertiseClient := fs.String("advertise-client-urls", "", "client URLs to advertise (default: listen-client-urls)")
	listenPeer := fs.String("listen-peer-urls", "http://127.0.0.1:2380", "comma-separated peer URLs to listen on")
	// A throwaway test cluster does not need durability; skipping fsync makes
	// etcd (and therefore every API write) much faster on slow CI disks.
	unsafeNoFsync := fs.Bool("unsafe-no-fsync", true, "disable fsync (test clusters only)")
	logLevel := fs.String("log-level", "warn", "zap log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		return 2
	}
	if *advertiseClient == "" {
		*advertiseClient = *listenClient
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.UnsafeNoFsync = *unsafeNoFsync
	cfg.LogLevel = *logLevel
	cfg.LogOutputs = []string{"stderr"}
	// Only etcdmain's flag parsing sets this default; left at zero, the
	// embedded server logs every single request as "expensive".
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	var err error
	if cfg.ListenClientUrls, err = parseURLs(*listenClient); err != nil {
		return fail(err)
	}
	if cfg.AdvertiseClientUrls, err = parseURLs(*advertiseClient); err != nil {
		return fail(err)
	}
	if cfg.ListenPeerUrls, err = parseURLs(*listenPeer); err != nil {
		return fail(err)
	}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fail(err)
	}
	defer e.Close()

	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd: ready, serving clients on %s\n", *listenClient)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return fail(fmt.Errorf("server took too long to become ready"))
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-e.Err():
		return fail(err)
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "etcd: received %v, shutting down\n", s)
		return 0
	}
}

func parseURLs(s string) ([]url.URL, error) {
	var out []url.URL
	for _, part := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("bad URL %q: %w", part, err)
		}
		out = append(out, *u)
	}
	return out, nil
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
	return 1
}

// kubernetesVersion is stamped in at build time with -ldflags -X (see
// cluster.py build); without it, it reports the placeholder upstream uses.
func kubernetesVersion() string { return version.Get().GitVersion }
