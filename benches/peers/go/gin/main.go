// Gin peer for ringo's benchmarks: the routes and bodies of ringo's default app.
// Release mode, gin.New() (no logger, no recovery middleware), GOMAXPROCS = -workers.
// With -redis host:port, /plaintext and /json answer the values of the keys
// bench:plaintext and bench:json, one GET per request through a redigo pool (the
// seed service's stack; compared with ringo's examples/redis_get).
//
// Builds offline in GOPATH mode against Debian's golang-github-gin-gonic-gin-dev (1.8.1)
// and golang-github-gomodule-redigo-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o ../../bin/gin .
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"
)

type message struct {
	Message string `json:"message"`
}

type user struct {
	ID string `json:"id"`
}

const maxBody = 1 << 20

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8080, "port to listen on")
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	redisAddr := flag.String("redis", "", "answer /plaintext and /json from this Redis (host:port)")
	flag.Parse()
	if *workers < 1 {
		*workers = 1
	}
	runtime.GOMAXPROCS(*workers)

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	if *redisAddr != "" {
		pool := &redis.Pool{
			MaxIdle:   256,
			MaxActive: 0,
			Dial:      func() (redis.Conn, error) { return redis.Dial("tcp", *redisAddr) },
		}
		fromRedis := func(key, contentType string) gin.HandlerFunc {
			return func(c *gin.Context) {
				conn := pool.Get()
				value, err := redis.Bytes(conn.Do("GET", key))
				conn.Close()
				if err != nil {
					c.String(http.StatusServiceUnavailable, err.Error())
					return
				}
				c.Data(http.StatusOK, contentType, value)
			}
		}
		r.GET("/plaintext", fromRedis("bench:plaintext", "text/plain"))
		r.GET("/json", fromRedis("bench:json", "application/json"))
		// Cache-aside in process memory (60 s TTL) in front of Redis, as a Gin service
		// with a local cache does it.
		type cached struct {
			value   []byte
			expires time.Time
		}
		var mu sync.RWMutex
		items := map[string]cached{}
		r.GET("/items/:id", func(c *gin.Context) {
			key := "item:" + c.Param("id")
			mu.RLock()
			hit, ok := items[key]
			mu.RUnlock()
			if ok && time.Now().Before(hit.expires) {
				c.Data(http.StatusOK, "application/json", hit.value)
				return
			}
			conn := pool.Get()
			value, err := redis.Bytes(conn.Do("GET", key))
			conn.Close()
			if err == redis.ErrNil {
				c.String(http.StatusNotFound, "no such item")
				return
			}
			if err != nil {
				c.String(http.StatusServiceUnavailable, err.Error())
				return
			}
			mu.Lock()
			items[key] = cached{value: value, expires: time.Now().Add(60 * time.Second)}
			mu.Unlock()
			c.Data(http.StatusOK, "application/json", value)
		})
	} else {
		r.GET("/plaintext", func(c *gin.Context) {
			c.String(http.StatusOK, "Hello, World!")
		})
		r.GET("/json", func(c *gin.Context) {
			c.JSON(http.StatusOK, message{Message: "Hello, World!"})
		})
	}
	r.GET("/users/:id", func(c *gin.Context) {
		c.JSON(http.StatusOK, user{ID: c.Param("id")})
	})
	r.POST("/echo", func(c *gin.Context) {
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody))
		var doc interface{}
		if err == nil {
			err = json.Unmarshal(body, &doc)
		}
		if err != nil {
			c.String(http.StatusBadRequest, "invalid JSON")
			return
		}
		c.JSON(http.StatusOK, doc)
	})

	addr := fmt.Sprintf("%s:%d", *host, *port)
	log.Fatal(http.ListenAndServe(addr, r))
}
