// A client on Go's golang.org/x/crypto/ssh (Debian's golang-go and
// golang-golang-x-crypto-dev, built offline once per test run) for the front
// door's tests: one connection, the host key checked against a known_hosts
// file (x/crypto/ssh/knownhosts) under the host key algorithms asked for, and
// -sessions sessions at once on it, each running -command with %d replaced
// by its number. Prints one JSON object: the host key type it verified and
// each session's stdout, exit status and error.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

type session struct {
	Stdout string `json:"stdout"`
	Exit   int    `json:"exit"`
	Error  string `json:"error,omitempty"`
}

type report struct {
	HostKey  string    `json:"hostKey,omitempty"`
	Error    string    `json:"error,omitempty"`
	Sessions []session `json:"sessions,omitempty"`
}

func main() {
	port := flag.Int("port", 0, "the door's port")
	keyFile := flag.String("key", "", "private key file")
	knownHostsFile := flag.String("known-hosts", "", "known_hosts file")
	user := flag.String("user", "", "user name: the destination")
	algorithms := flag.String("host-key-algorithms", "", "comma-separated; empty: x/crypto's default")
	sessions := flag.Int("sessions", 1, "sessions at once on the one connection")
	command := flag.String("command", "echo %d", "command; %d is the session's number")
	flag.Parse()
	r := run(*port, *keyFile, *knownHostsFile, *user, *algorithms, *sessions, *command)
	json.NewEncoder(os.Stdout).Encode(r)
}

func run(port int, keyFile, knownHostsFile, user, algorithms string, n int, command string) report {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return report{Error: err.Error()}
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return report{Error: err.Error()}
	}
	check, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return report{Error: err.Error()}
	}
	var r report
	config := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			r.HostKey = key.Type()
			return check(host, remote, key)
		},
		Timeout: 20 * time.Second,
	}
	if algorithms != "" {
		config.HostKeyAlgorithms = strings.Split(algorithms, ",")
	}
	client, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), config)
	if err != nil {
		return report{Error: err.Error()}
	}
	defer client.Close()
	r.Sessions = make([]session, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r.Sessions[i] = runOne(client, strings.ReplaceAll(command, "%d", fmt.Sprint(i)))
		}(i)
	}
	wg.Wait()
	return r
}

func runOne(client *ssh.Client, command string) session {
	s, err := client.NewSession()
	if err != nil {
		return session{Exit: -1, Error: err.Error()}
	}
	defer s.Close()
	out, err := s.Output(command)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return session{Stdout: string(out)}
	case errors.As(err, &exit):
		return session{Stdout: string(out), Exit: exit.ExitStatus()}
	default:
		return session{Stdout: string(out), Exit: -1, Error: err.Error()}
	}
}
