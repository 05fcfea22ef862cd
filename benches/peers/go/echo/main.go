// Echo peer for ringo's benchmarks: the routes and bodies of ringo's default app.
// No middleware, GOMAXPROCS = -workers. JSON goes through encoding/json's Marshal and
// JSONBlob (c.JSON's encoder would add a trailing newline to the body).
//
// Builds offline in GOPATH mode against Debian's golang-github-labstack-echo-dev (4.2.1,
// import path github.com/labstack/echo there):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o ../../bin/echo .
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"runtime"

	"github.com/labstack/echo"
)

type message struct {
	Message string `json:"message"`
}

type user struct {
	ID string `json:"id"`
}

const maxBody = 1 << 20

func jsonBlob(c echo.Context, v interface{}) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, b)
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8080, "port to listen on")
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	flag.Parse()
	if *workers < 1 {
		*workers = 1
	}
	runtime.GOMAXPROCS(*workers)

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.GET("/plaintext", func(c echo.Context) error {
		return c.String(http.StatusOK, "Hello, World!")
	})
	e.GET("/json", func(c echo.Context) error {
		return jsonBlob(c, message{Message: "Hello, World!"})
	})
	e.GET("/users/:id", func(c echo.Context) error {
		return jsonBlob(c, user{ID: c.Param("id")})
	})
	e.POST("/echo", func(c echo.Context) error {
		body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
		var doc interface{}
		if err == nil {
			err = json.Unmarshal(body, &doc)
		}
		if err != nil {
			return c.String(http.StatusBadRequest, "invalid JSON")
		}
		return jsonBlob(c, doc)
	})

	addr := fmt.Sprintf("%s:%d", *host, *port)
	log.Fatal(e.Start(addr))
}
