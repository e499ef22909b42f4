// drand-check verifies beacons with drand's own Go code, so that the Rust node's output is
// judged by the reference implementation rather than by itself.
//
//	drand-check http --url URL --chain-hash HEX --from A --to B
//	    go-clients' HTTP client behind its verifying wrapper (what applications use): the
//	    chain info is fetched from URL/<hash>/info and must hash to --chain-hash, then every
//	    round from A to B is fetched and verified.
//	drand-check grpc --addr HOST:PORT --ca FILE --chain-hash HEX --from A --to B
//	    drand's protobuf Public service over TLS (the CA file is the only trust root): the
//	    ChainInfo packet must hash to --chain-hash, then PublicRand for every round, each
//	    verified with drand's scheme code against the chain's public key.
//
// Prints one line per round, "round N: valid RANDOMNESS", and exits 0 when every round
// verifies, 1 when one does not (the line names the round and drand's error), 2 on bad usage.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/drand/drand/v2/common"
	"github.com/drand/drand/v2/common/chain"
	"github.com/drand/drand/v2/common/log"
	"github.com/drand/drand/v2/crypto"
	pdrand "github.com/drand/drand/v2/protobuf/drand"
	"github.com/drand/go-clients/client"
	dhttp "github.com/drand/go-clients/client/http"
)

const (
	exitInvalid = 1
	exitUsage   = 2
)

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "drand-check: %s\nusage: drand-check http --url URL --chain-hash HEX --from A --to B\n"+
		"       drand-check grpc --addr HOST:PORT --ca FILE --chain-hash HEX --from A --to B\n", msg)
	os.Exit(exitUsage)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "drand-check: "+format+"\n", args...)
	os.Exit(exitInvalid)
}

type rounds struct {
	from, to uint64
	hash     []byte
}

func parse(fs *flag.FlagSet, args []string) rounds {
	hashHex := fs.String("chain-hash", "", "hex chain hash to trust")
	from := fs.Uint64("from", 1, "first round")
	to := fs.Uint64("to", 1, "last round")
	if err := fs.Parse(args); err != nil {
		usage(err.Error())
	}
	hash, err := hex.DecodeString(*hashHex)
	if err != nil || len(hash) != 32 {
		usage("--chain-hash: 64 hex characters expected")
	}
	if *from == 0 || *to < *from {
		usage("--from/--to: 1 <= from <= to expected")
	}
	return rounds{from: *from, to: *to, hash: hash}
}

func main() {
	if len(os.Args) < 2 {
		usage("missing command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch os.Args[1] {
	case "http":
		fs := flag.NewFlagSet("http", flag.ExitOnError)
		url := fs.String("url", "", "base URL of the HTTP API")
		r := parse(fs, os.Args[2:])
		if *url == "" {
			usage("--url is required")
		}
		checkHTTP(ctx, *url, r)
	case "grpc":
		fs := flag.NewFlagSet("grpc", flag.ExitOnError)
		addr := fs.String("addr", "", "HOST:PORT of the node's gRPC listener (TLS)")
		ca := fs.String("ca", "", "PEM file of the CA that signed the node's certificate")
		r := parse(fs, os.Args[2:])
		if *addr == "" || *ca == "" {
			usage("--addr and --ca are required")
		}
		checkGRPC(ctx, *addr, *ca, r)
	default:
		usage("unknown command " + os.Args[1])
	}
}

func checkHTTP(ctx context.Context, url string, r rounds) {
	logger := log.New(os.Stderr, log.WarnLevel, false)
	hc, err := dhttp.New(ctx, logger, url, r.hash, nil)
	if err != nil {
		fail("cannot fetch the chain info from %s: %v", url, err)
	}
	c, err := client.New(client.From(hc), client.WithChainHash(r.hash), client.WithLogger(logger))
	if err != nil {
		fail("cannot make a verifying client: %v", err)
	}
	defer c.Close()
	for round := r.from; round <= r.to; round++ {
		res, err := c.Get(ctx, round)
		if err != nil {
			fail("round %d: INVALID: %v", round, err)
		}
		if res.GetRound() != round {
			fail("round %d: INVALID: the server answered round %d", round, res.GetRound())
		}
		fmt.Printf("round %d: valid %x\n", round, res.GetRandomness())
	}
}

func checkGRPC(ctx context.Context, addr, caFile string, r rounds) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		usage(fmt.Sprintf("--ca: %v", err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		usage("--ca: no PEM certificate in " + caFile)
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fail("cannot dial %s: %v", addr, err)
	}
	defer conn.Close()
	public := pdrand.NewPublicClient(conn)
	packet, err := public.ChainInfo(ctx, &pdrand.ChainInfoRequest{})
	if err != nil {
		fail("ChainInfo from %s: %v", addr, err)
	}
	info, err := chain.InfoFromProto(packet)
	if err != nil {
		fail("ChainInfo from %s does not decode: %v", addr, err)
	}
	if !bytes.Equal(info.Hash(), r.hash) {
		fail("ChainInfo from %s hashes to %x, not the trusted %x", addr, info.Hash(), r.hash)
	}
	if md := packet.GetMetadata(); md != nil && len(md.GetChainHash()) > 0 && !bytes.Equal(md.GetChainHash(), r.hash) {
		fail("ChainInfo metadata.chain_hash is %x, not %x", md.GetChainHash(), r.hash)
	}
	sch, err := crypto.SchemeFromName(info.GetSchemeName())
	if err != nil {
		fail("scheme %q: %v", info.GetSchemeName(), err)
	}
	previous := info.GenesisSeed
	for round := r.from; round <= r.to; round++ {
		resp, err := public.PublicRand(ctx, &pdrand.PublicRandRequest{Round: round})
		if err != nil {
			fail("round %d: PublicRand: %v", round, err)
		}
		if resp.GetRound() != round {
			fail("round %d: INVALID: the node answered round %d", round, resp.GetRound())
		}
		b := &common.Beacon{Round: round, Signature: resp.GetSignature(), PreviousSig: resp.GetPreviousSignature()}
		if sch.Name == crypto.DefaultSchemeID && round == r.from && round == 1 && !bytes.Equal(b.PreviousSig, previous) {
			fail("round 1: INVALID: previous signature is not the genesis seed")
		}
		if err := sch.VerifyBeacon(b, info.PublicKey); err != nil {
			fail("round %d: INVALID: %v", round, err)
		}
		if sch.Name == crypto.DefaultSchemeID && round > r.from && !bytes.Equal(b.PreviousSig, previous) {
			fail("round %d: INVALID: previous signature is not round %d's signature", round, round-1)
		}
		previous = b.Signature
		fmt.Printf("round %d: valid %x\n", round, b.GetRandomness())
	}
}
