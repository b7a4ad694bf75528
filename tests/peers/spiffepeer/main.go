// Command spiffepeer drives go-spiffe v2 (the reference Go SDK) as a live
// peer for spiffile's tests: a SPIFFE bundle endpoint server and client
// (SPIFFE Federation §5, https_web), JWT-SVID validation and minting
// (JWT-SVID §3), and X.509-SVID verification and mutual TLS with SPIFFE ID
// authorization (X.509-SVID §5).
//
// Every subcommand prints its result as one line of JSON on stdout and
// exits 0; a rejection prints "error: ..." on stderr and exits 1; a usage
// mistake exits 2. Servers print {"url": ...} or {"addr": ...} once they
// listen, then serve until stdin closes or they are signalled.
package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const usage = `usage: spiffepeer COMMAND [flags]

commands:
  validate-jwt   -trust-domain TD -bundle JWKS -audience AUD [-token-file F]
                 jwtsvid.ParseAndValidate against a JWT bundle (a JWK Set);
                 the token is read from -token-file or stdin.
                 prints {"spiffe_id", "audience", "expiry", "claims"}
  mint-jwt       -key PKCS8.pem -kid KID -sub ID -aud AUD [-aud AUD...]
                 [-alg ES256] [-ttl 60s] [-iat UNIX] [-aud-string] [-typ JWT]
                 signs a JWT-SVID with go-jose (go-spiffe has no minter);
                 aud is an array unless -aud-string. prints {"token"}
  serve-bundle   -trust-domain TD -bundle FILE -cert PEM -key PEM [-addr A]
                 federation.NewHandler over https_web; FILE (a SPIFFE bundle)
                 is re-read on every request. prints {"url"}
  fetch-bundle   -trust-domain TD -url URL [-ca-file PEM]
                 federation.FetchBundle with https_web (system roots unless
                 -ca-file). prints {"bundle": <the bundle document>}
  verify-x509    -trust-domain TD -bundle PEM -cert PEM [-at UNIX]
                 x509svid.Verify of a chain (leaf first) against the
                 trust domain's X.509 authorities. prints {"spiffe_id"}
  mtls-server    -cert PEM -key PEM -trust-domain TD -bundle PEM -allow ID
                 [-addr A]   tlsconfig.MTLSServerConfig + AuthorizeID; writes
                 one line {"peer": ID} to each client and closes. prints
                 {"addr"} once listening, then one {"peer"} or {"refused"}
                 line per connection.
  mtls-client    -cert PEM -key PEM -trust-domain TD -bundle PEM -allow ID
                 -addr A     tlsconfig.MTLSClientConfig + AuthorizeID; prints
                 {"server": ID, "line": <what the server wrote>}
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"validate-jwt": validateJWT,
		"mint-jwt":     mintJWT,
		"serve-bundle": serveBundle,
		"fetch-bundle": fetchBundle,
		"verify-x509":  verifyX509,
		"mtls-server":  mtlsServer,
		"mtls-client":  mtlsClient,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(os.Stderr, "usage: %v\n", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func parseFlags(fs *flag.FlagSet, args []string, required ...string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	for _, name := range required {
		if f := fs.Lookup(name); f == nil || f.Value.String() == "" {
			return usageError{fmt.Sprintf("%s: -%s is required", fs.Name(), name)}
		}
	}
	return nil
}

func emit(v any) {
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
}

func trustDomain(name string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return td, usageError{err.Error()}
	}
	return td, nil
}

func validateJWT(args []string) error {
	fs := flag.NewFlagSet("validate-jwt", flag.ContinueOnError)
	tdName := fs.String("trust-domain", "", "")
	bundlePath := fs.String("bundle", "", "")
	tokenFile := fs.String("token-file", "", "")
	var audience multi
	fs.Var(&audience, "audience", "")
	if err := parseFlags(fs, args, "trust-domain", "bundle", "audience"); err != nil {
		return err
	}
	td, err := trustDomain(*tdName)
	if err != nil {
		return err
	}
	bundle, err := jwtbundle.Load(td, *bundlePath)
	if err != nil {
		return err
	}
	var raw []byte
	if *tokenFile != "" {
		raw, err = os.ReadFile(*tokenFile)
	} else {
		raw, err = io.ReadAll(os.Stdin)
	}
	if err != nil {
		return err
	}
	svid, err := jwtsvid.ParseAndValidate(strings.TrimSpace(string(raw)), bundle, audience)
	if err != nil {
		return err
	}
	emit(map[string]any{
		"spiffe_id": svid.ID.String(),
		"audience":  svid.Audience,
		"expiry":    svid.Expiry.Unix(),
		"claims":    svid.Claims,
	})
	return nil
}

func loadSigner(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block in key file")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
}

func mintJWT(args []string) error {
	fs := flag.NewFlagSet("mint-jwt", flag.ContinueOnError)
	keyPath := fs.String("key", "", "")
	kid := fs.String("kid", "", "")
	sub := fs.String("sub", "", "")
	alg := fs.String("alg", "ES256", "")
	typ := fs.String("typ", "JWT", "")
	ttl := fs.Duration("ttl", 60*time.Second, "")
	iat := fs.Int64("iat", 0, "")
	audString := fs.Bool("aud-string", false, "")
	var aud multi
	fs.Var(&aud, "aud", "")
	if err := parseFlags(fs, args, "key", "kid", "sub", "aud"); err != nil {
		return err
	}
	key, err := loadSigner(*keyPath)
	if err != nil {
		return err
	}
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), *kid)
	if *typ != "" {
		opts = opts.WithType(jose.ContentType(*typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(*alg), Key: key}, opts)
	if err != nil {
		return err
	}
	issued := time.Now()
	if *iat != 0 {
		issued = time.Unix(*iat, 0)
	}
	claims := map[string]any{
		"sub": *sub,
		"iat": issued.Unix(),
		"exp": issued.Add(*ttl).Unix(),
	}
	if *audString {
		if len(aud) != 1 {
			return usageError{"-aud-string takes exactly one -aud"}
		}
		claims["aud"] = aud[0]
	} else {
		claims["aud"] = []string(aud)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return err
	}
	emit(map[string]any{"token": token})
	return nil
}

// fileSource re-reads the SPIFFE bundle on every request, so a test can
// rotate what the endpoint serves (SPIFFE Federation §5.1: an endpoint
// serves the current bundle).
type fileSource struct {
	td   spiffeid.TrustDomain
	path string
}

func (s fileSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != s.td {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	return spiffebundle.Load(s.td, s.path)
}

// waitForStop returns when stdin reaches EOF or a signal arrives: the
// parent test process owns our lifetime either way.
func waitForStop() {
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		done <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-sig:
	}
}

func serveBundle(args []string) error {
	fs := flag.NewFlagSet("serve-bundle", flag.ContinueOnError)
	tdName := fs.String("trust-domain", "", "")
	bundlePath := fs.String("bundle", "", "")
	certPath := fs.String("cert", "", "")
	keyPath := fs.String("key", "", "")
	addr := fs.String("addr", "127.0.0.1:0", "")
	if err := parseFlags(fs, args, "trust-domain", "bundle", "cert", "key"); err != nil {
		return err
	}
	td, err := trustDomain(*tdName)
	if err != nil {
		return err
	}
	if _, err := spiffebundle.Load(td, *bundlePath); err != nil {
		return err
	}
	handler, err := federation.NewHandler(td, fileSource{td, *bundlePath})
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certPath, *keyPath)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	server := &http.Server{
		Handler:           handler,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = server.ServeTLS(ln, "", "") }()
	emit(map[string]any{"url": "https://" + ln.Addr().String() + "/"})
	waitForStop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return server.Shutdown(ctx)
}

func fetchBundle(args []string) error {
	fs := flag.NewFlagSet("fetch-bundle", flag.ContinueOnError)
	tdName := fs.String("trust-domain", "", "")
	url := fs.String("url", "", "")
	caFile := fs.String("ca-file", "", "")
	if err := parseFlags(fs, args, "trust-domain", "url"); err != nil {
		return err
	}
	td, err := trustDomain(*tdName)
	if err != nil {
		return err
	}
	var opts []federation.FetchOption
	if *caFile != "" {
		pemBytes, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return errors.New("no certificate in -ca-file")
		}
		opts = append(opts, federation.WithWebPKIRoots(pool))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bundle, err := federation.FetchBundle(ctx, td, *url, opts...)
	if err != nil {
		return err
	}
	doc, err := bundle.Marshal()
	if err != nil {
		return err
	}
	emit(map[string]any{"bundle": json.RawMessage(doc)})
	return nil
}

func loadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificate in %s", path)
	}
	return certs, nil
}

func verifyX509(args []string) error {
	fs := flag.NewFlagSet("verify-x509", flag.ContinueOnError)
	tdName := fs.String("trust-domain", "", "")
	bundlePath := fs.String("bundle", "", "")
	certPath := fs.String("cert", "", "")
	at := fs.Int64("at", 0, "")
	if err := parseFlags(fs, args, "trust-domain", "bundle", "cert"); err != nil {
		return err
	}
	td, err := trustDomain(*tdName)
	if err != nil {
		return err
	}
	bundle, err := x509bundle.Load(td, *bundlePath)
	if err != nil {
		return err
	}
	certs, err := loadCerts(*certPath)
	if err != nil {
		return err
	}
	var opts []x509svid.VerifyOption
	if *at != 0 {
		opts = append(opts, x509svid.WithTime(time.Unix(*at, 0)))
	}
	id, _, err := x509svid.Verify(certs, bundle, opts...)
	if err != nil {
		return err
	}
	emit(map[string]any{"spiffe_id": id.String()})
	return nil
}

type mtlsFlags struct {
	cert, key, tdName, bundle, allow, addr *string
}

func newMTLSFlags(fs *flag.FlagSet, addr string) mtlsFlags {
	return mtlsFlags{
		cert:   fs.String("cert", "", ""),
		key:    fs.String("key", "", ""),
		tdName: fs.String("trust-domain", "", ""),
		bundle: fs.String("bundle", "", ""),
		allow:  fs.String("allow", "", ""),
		addr:   fs.String("addr", addr, ""),
	}
}

func (f mtlsFlags) load() (*x509svid.SVID, *x509bundle.Bundle, spiffeid.ID, error) {
	var none spiffeid.ID
	td, err := trustDomain(*f.tdName)
	if err != nil {
		return nil, nil, none, err
	}
	allowed, err := spiffeid.FromString(*f.allow)
	if err != nil {
		return nil, nil, none, usageError{err.Error()}
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

func peerID(state tls.ConnectionState) (string, error) {
	if len(state.PeerCertificates) == 0 {
		return "", errors.New("no peer certificate")
	}
	id, err := x509svid.IDFromCert(state.PeerCertificates[0])
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

func mtlsServer(args []string) error {
	fs := flag.NewFlagSet("mtls-server", flag.ContinueOnError)
	f := newMTLSFlags(fs, "127.0.0.1:0")
	if err := parseFlags(fs, args, "cert", "key", "trust-domain", "bundle", "allow"); err != nil {
		return err
	}
	svid, bundle, allowed, err := f.load()
	if err != nil {
		return err
	}
	config := tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeID(allowed))
	ln, err := tls.Listen("tcp", *f.addr, config)
	if err != nil {
		return err
	}
	emit(map[string]any{"addr": ln.Addr().String()})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			handleMTLS(conn.(*tls.Conn))
		}
	}()
	waitForStop()
	return ln.Close()
}

func handleMTLS(conn *tls.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.Handshake(); err != nil {
		emit(map[string]any{"refused": err.Error()})
		return
	}
	id, err := peerID(conn.ConnectionState())
	if err != nil {
		emit(map[string]any{"refused": err.Error()})
		return
	}
	emit(map[string]any{"peer": id})
	line, _ := json.Marshal(map[string]any{"peer": id})
	_, _ = conn.Write(append(line, '\n'))
}

func mtlsClient(args []string) error {
	fs := flag.NewFlagSet("mtls-client", flag.ContinueOnError)
	f := newMTLSFlags(fs, "")
	if err := parseFlags(fs, args, "cert", "key", "trust-domain", "bundle", "allow", "addr"); err != nil {
		return err
	}
	svid, bundle, allowed, err := f.load()
	if err != nil {
		return err
	}
	config := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(allowed))
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", *f.addr, config)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	id, err := peerID(conn.ConnectionState())
	if err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	emit(map[string]any{"server": id, "line": strings.TrimRight(line, "\n")})
	return nil
}
