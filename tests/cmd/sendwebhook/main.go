// Command sendwebhook signs a body as a provider would (Standard Webhooks)
// and POSTs it to the receiver, printing the answer. It reads RECEIVER_URL and
// WEBHOOK_SECRET_<PROVIDER> from the environment (set -a; source .run/env; set +a).
//
//	go run ./tests/cmd/sendwebhook -provider generic -body '{"type":"review.upserted",...}'
//	go run ./tests/cmd/sendwebhook -provider generic -file delivery.json -id msg_123
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

func main() {
	providerName := flag.String("provider", "generic", "provider name")
	body := flag.String("body", "", "the JSON body to send")
	file := flag.String("file", "", "read the body from this file (- for stdin)")
	id := flag.String("id", "", "webhook-id (default: random)")
	receiver := flag.String("receiver", os.Getenv("RECEIVER_URL"), "receiver base URL (default $RECEIVER_URL)")
	flag.Parse()
	if err := run(*providerName, *body, *file, *id, *receiver); err != nil {
		fmt.Fprintln(os.Stderr, "sendwebhook:", err)
		os.Exit(1)
	}
}

func run(providerName, body, file, id, receiver string) error {
	if receiver == "" {
		receiver = "http://127.0.0.1:8081"
	}
	if file != "" {
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return err
		}
		body = string(b)
	}
	if body == "" {
		return fmt.Errorf("give the body with -body or -file")
	}
	secretVar := config.SecretVar(providerName)
	keys, err := webhook.ParseSecrets(os.Getenv(secretVar))
	if err != nil {
		return fmt.Errorf("%s: %w", secretVar, err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%s is not set: run `set -a; source .run/env; set +a` after make run", secretVar)
	}
	if id == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = "msg_" + hex.EncodeToString(b)
	}
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(receiver, "/")+"/webhooks/"+providerName, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	webhook.SetHeaders(req.Header, keys[0], id, time.Now(), []byte(body))
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(res.Body)
	fmt.Printf("%s %s\n", res.Status, strings.TrimSpace(string(answer)))
	if res.StatusCode/100 != 2 {
		os.Exit(2)
	}
	return nil
}
