// Command grpcpeer drives go-spiffe v2's gRPC credentials
// (spiffegrpc/grpccredentials, over grpc-go) as a live peer for spiffile's
// gRPC mutual TLS: a server and a client of the standard health service
// (grpc.health.v1.Health/Check), so neither side needs generated code of
// ours. Authorization is tlsconfig.AuthorizeID (X.509-SVID §5).
//
// check prints one JSON line and exits 0, or prints "error: ..." on stderr
// and exits 1. serve prints {"addr"} once it listens, then one {"peer": ID}
// line per call it answers, and serves until stdin closes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const usage = `usage: grpcpeer COMMAND -cert PEM -key PEM -trust-domain TD -bundle PEM -allow ID [-addr A]

commands:
  serve   grpccredentials.MTLSServerCredentials + AuthorizeID(allow), serving
          grpc.health.v1.Health; prints {"addr"}, then {"peer": ID} per call.
  check   grpccredentials.MTLSClientCredentials + AuthorizeID(allow); one
          Health/Check to -addr; prints {"status": "SERVING"}.
`

type flags struct {
	cert, key, td, bundle, allow, addr *string
}

func load(f flags) (*x509svid.SVID, *x509bundle.Bundle, spiffeid.ID, error) {
	var none spiffeid.ID
	td, err := spiffeid.TrustDomainFromString(*f.td)
	if err != nil {
		return nil, nil, none, err
	}
	allowed, err := spiffeid.FromString(*f.allow)
	if err != nil {
		return nil, nil, none, err
	}
	svid, err := x509svid.Load(*f.cert, *f.key)
	if err != nil {
		return nil, nil, none, err
	}
	bundle, err := x509bundle.Load(td, *f.bundle)
	if err != nil {
		return nil, nil, none, err
	}
	return svid, bundle, allowed, nil
}

func emit(v any) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func serve(f flags) error {
	svid, bundle, allowed, err := load(f)
	if err != nil {
		return err
	}
	creds := grpccredentials.MTLSServerCredentials(svid, bundle, tlsconfig.AuthorizeID(allowed))
	report := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		id, ok := grpccredentials.PeerIDFromContext(ctx)
		if ok {
			emit(map[string]any{"peer": id.String()})
		}
		return next(ctx, req)
	}
	server := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(report))
	healthpb.RegisterHealthServer(server, health.NewServer())
	ln, err := net.Listen("tcp", *f.addr)
	if err != nil {
		return err
	}
	emit(map[string]any{"addr": ln.Addr().String()})
	go func() { _ = server.Serve(ln) }()
	_, _ = io.Copy(io.Discard, os.Stdin) // Until stdin closes.
	server.Stop()
	return nil
}

func check(f flags) error {
	svid, bundle, allowed, err := load(f)
	if err != nil {
		return err
	}
	creds := grpccredentials.MTLSClientCredentials(svid, bundle, tlsconfig.AuthorizeID(allowed))
	conn, err := grpc.NewClient(*f.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	answer, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	emit(map[string]any{"status": answer.GetStatus().String()})
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ContinueOnError)
	f := flags{
		cert:   fs.String("cert", "", ""),
		key:    fs.String("key", "", ""),
		td:     fs.String("trust-domain", "", ""),
		bundle: fs.String("bundle", "", ""),
		allow:  fs.String("allow", "", ""),
		addr:   fs.String("addr", "127.0.0.1:0", ""),
	}
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(f)
	case "check":
		err = check(f)
	default:
		err = errors.New("unknown command " + os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
