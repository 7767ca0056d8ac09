// Command river-bench is River's side of `make bench-queue` (bench/queue.py
// builds it from the Go module proxy into ~/.cache/corral and runs it; it is
// never part of corral). It defines a no-op job, as corral's `noop` kind and
// the no-op jobs of bench/_peers.py, so every queue does the same (no) work.
//
//	river-bench migrate                  River's own schema (rivermigrate, up)
//	river-bench enqueue N                N jobs with InsertManyFast, 10,000 per COPY
//	river-bench work [flags]             work until SIGTERM/SIGINT, then stop
//
// The database comes from DATABASE_URL (never the command line, so no
// password shows in `ps`). Each command ends with one machine-readable line
// on stdout, `river-bench <command>: key=value ...`, which bench/queue.py parses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// NoopArgs is the job: no arguments, no work.
type NoopArgs struct{}

func (NoopArgs) Kind() string { return "noop" }

// NoopWorker counts the jobs it ran, for the exit line.
type NoopWorker struct {
	river.WorkerDefaults[NoopArgs]
	worked atomic.Int64
}

func (w *NoopWorker) Work(ctx context.Context, job *river.Job[NoopArgs]) error {
	w.worked.Add(1)
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "river-bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: river-bench migrate | enqueue N | work [-max-workers N] [-fetch-cooldown D] [-fetch-poll-interval D]")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return errors.New("DATABASE_URL is not set: point it at the database River's schema goes in")
	}
	ctx := context.Background()
	config, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("DATABASE_URL is not a valid PostgreSQL URL (%v)", err)
	}
	// Pool size: pgxpool's default is max(4, CPUs); -pool-conns overrides it for work.
	flags := flag.NewFlagSet("work", flag.ContinueOnError)
	maxWorkers := flags.Int("max-workers", 1000, "River QueueConfig.MaxWorkers for the default queue")
	cooldown := flags.Duration("fetch-cooldown", river.FetchCooldownDefault, "Config.FetchCooldown: least time between two fetches")
	poll := flags.Duration("fetch-poll-interval", river.FetchPollIntervalDefault, "Config.FetchPollInterval: fetch at least this often")
	poolConns := flags.Int("pool-conns", 0, "pgxpool MaxConns (0: pgxpool's default)")
	if args[0] == "work" {
		if err := flags.Parse(args[1:]); err != nil {
			return err
		}
		if *poolConns > 0 {
			config.MaxConns = int32(*poolConns)
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return err
	}
	defer pool.Close()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	switch args[0] {
	case "migrate":
		migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: quiet})
		if err != nil {
			return err
		}
		res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
		if err != nil {
			return fmt.Errorf("migrating River's schema: %w", err)
		}
		fmt.Printf("river-bench migrate: applied=%d\n", len(res.Versions))
		return nil

	case "enqueue":
		if len(args) != 2 {
			return errors.New("usage: river-bench enqueue N")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			return fmt.Errorf("enqueue: N must be a positive integer, got %q", args[1])
		}
		client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: quiet})
		if err != nil {
			return err
		}
		const chunk = 10_000
		params := make([]river.InsertManyParams, chunk)
		for i := range params {
			params[i] = river.InsertManyParams{Args: NoopArgs{}}
		}
		started := time.Now()
		for done := 0; done < n; done += chunk {
			if _, err := client.InsertManyFast(ctx, params[:min(chunk, n-done)]); err != nil {
				return fmt.Errorf("enqueue: %w", err)
			}
		}
		fmt.Printf("river-bench enqueue: jobs=%d seconds=%.6f\n", n, time.Since(started).Seconds())
		return nil

	case "work":
		worker := &NoopWorker{}
		workers := river.NewWorkers()
		river.AddWorker(workers, worker)
		client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
			Logger:            quiet,
			FetchCooldown:     *cooldown,
			FetchPollInterval: *poll,
			Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: *maxWorkers}},
			Workers:           workers,
		})
		if err != nil {
			return err
		}
		stop, cancel := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer cancel()
		if err := client.Start(ctx); err != nil {
			return err
		}
		<-stop.Done()
		stopCtx, cancelStop := context.WithTimeout(ctx, 20*time.Second)
		defer cancelStop()
		if err := client.Stop(stopCtx); err != nil {
			return fmt.Errorf("stopping the client: %w", err)
		}
		var usage syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
		cpu := time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
		fmt.Printf("river-bench work: worked=%d cpu_s=%.3f\n", worker.worked.Load(), cpu.Seconds())
		return nil
	}
	return fmt.Errorf("unknown command %q (migrate, enqueue or work)", args[0])
}
