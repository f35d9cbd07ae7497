import { CoalescedFile } from '../../common/platform/coalesced-file';
import { FakeClock } from '../../testkit/fake-clock';

// CoalescedFile on a FakeClock and an in-memory disk: every write is an explicit step of the test.

const FILE = '/state/haproxy.cfg';
const DELAY = 100;

/** One write the disk has started and not finished; `resolve`/`reject` finish it by hand. */
interface InFlight {
  readonly content: string;
  resolve(): void;
  reject(err: Error): void;
}

/**
 * An in-memory disk. Writes land at once unless `hold` is set (then they wait in `inFlight` until finished by hand),
 * or fail with what `failWith` returns. `started` lists every write begun, in order; `content` is what the file holds.
 */
class FakeDisk {
  content: string | undefined;
  readonly started: string[] = [];
  readonly inFlight: InFlight[] = [];
  hold = false;
  failWith: ((content: string) => Error | undefined) | undefined;

  readonly write = (file: string, content: string): Promise<void> => {
    expect(file).toBe(FILE);
    this.started.push(content);
    const err = this.failWith?.(content);
    if (err) return Promise.reject(err);
    if (!this.hold) {
      this.content = content;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w: InFlight = {
        content,
        resolve: () => {
          this.inFlight.splice(this.inFlight.indexOf(w), 1);
          this.content = content;
          resolve();
        },
        reject: (e) => {
          this.inFlight.splice(this.inFlight.indexOf(w), 1);
          reject(e);
        },
      };
      this.inFlight.push(w);
    });
  };
}

/** Lets every promise chain started so far settle (a few turns of the event loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

function setup(delayMs = DELAY) {
  const clock = new FakeClock(0);
  const disk = new FakeDisk();
  const errors: { file: string; message: string }[] = [];
  const file = new CoalescedFile(FILE, disk.write, delayMs, clock, (f, err) =>
    errors.push({ file: f, message: (err as Error).message }),
  );
  /** A content producer that counts its calls. */
  const produced: string[] = [];
  const producer = (text: string) => () => {
    produced.push(text);
    return text;
  };
  return { clock, disk, errors, file, produced, producer };
}

describe('CoalescedFile: schedule', () => {
  test('many schedules within the delay: one write, of the newest content, produced once (older producers never run)', async () => {
    const { clock, disk, file, produced, producer } = setup();
    for (let i = 1; i <= 5; i++) {
      file.schedule(producer(`v${i}`));
      clock.advance(10);
    }
    expect(file.dirty).toBe(true);
    // The delay runs from the first schedule: later ones do not push the write back.
    clock.advance(DELAY - 1 - clock.now());
    await settle();
    expect(disk.started).toEqual([]);
    clock.advance(1);
    await settle();
    expect(disk.started).toEqual(['v5']);
    expect(produced).toEqual(['v5']);
    expect(disk.content).toBe('v5');
    expect(file.dirty).toBe(false);
    expect(clock.pending).toBe(0);
    // Nothing more happens later.
    clock.advance(10 * DELAY);
    await settle();
    expect(disk.started).toEqual(['v5']);
  });

  test('nothing is written (or produced) before delayMs; the write happens at delayMs', async () => {
    const { clock, disk, file, produced, producer } = setup();
    file.schedule(producer('a'));
    clock.advance(DELAY - 1);
    await settle();
    expect(disk.started).toEqual([]);
    expect(produced).toEqual([]); // produced lazily, at write time
    clock.advance(1);
    await settle();
    expect(disk.started).toEqual(['a']);
  });

  test('cancel drops what is pending: nothing is written, no timer is left', async () => {
    const { clock, disk, file, produced, producer } = setup();
    file.schedule(producer('a'));
    file.cancel();
    expect(file.dirty).toBe(false);
    expect(clock.pending).toBe(0);
    clock.advance(10 * DELAY);
    await settle();
    expect(disk.started).toEqual([]);
    expect(produced).toEqual([]);
  });

  test('flush with nothing pending resolves and writes nothing', async () => {
    const { disk, file } = setup();
    await expect(file.flush()).resolves.toBeUndefined();
    expect(disk.started).toEqual([]);
  });

  test('flush writes what is pending at once and clears the timer', async () => {
    const { clock, disk, file, producer } = setup();
    file.schedule(producer('a'));
    await file.flush();
    expect(disk.content).toBe('a');
    expect(file.dirty).toBe(false);
    expect(clock.pending).toBe(0);
  });
});

describe('CoalescedFile: writeNow', () => {
  test('writeNow drops what is pending: the older content is never written, nor produced', async () => {
    const { clock, disk, file, produced, producer } = setup();
    file.schedule(producer('old'));
    await file.writeNow('new');
    expect(disk.started).toEqual(['new']);
    expect(file.dirty).toBe(false);
    expect(clock.pending).toBe(0);
    clock.advance(10 * DELAY);
    await settle();
    expect(disk.started).toEqual(['new']);
    expect(produced).toEqual([]);
  });

  test("writeNow while a scheduled write is in flight waits for it: the file ends with writeNow's content", async () => {
    const { clock, disk, file, producer } = setup();
    disk.hold = true;
    file.schedule(producer('old'));
    clock.advance(DELAY);
    await settle();
    expect(disk.inFlight.map((w) => w.content)).toEqual(['old']);

    const now = file.writeNow('new');
    await settle();
    // Not started alongside the older write (which could then land last).
    expect(disk.started).toEqual(['old']);
    // Finish whatever is in flight newest first: a writeNow that had not waited would lose to 'old' here.
    for (let i = 0; i < 3; i++) {
      for (const w of [...disk.inFlight].reverse()) w.resolve();
      await settle();
    }
    await now;
    expect(disk.started).toEqual(['old', 'new']);
    expect(disk.content).toBe('new');
    expect(file.dirty).toBe(false);
  });

  test("a failed writeNow rejects with the write's error; then what it dropped is pending again, written on the next timer", async () => {
    const { clock, disk, errors, file, produced, producer } = setup();
    file.schedule(producer('runtime change'));
    disk.failWith = (c) => (c === 'reload config' ? new Error('ENOSPC: no space left on device') : undefined);

    await expect(file.writeNow('reload config')).rejects.toThrow('ENOSPC: no space left on device');
    expect(file.dirty).toBe(true); // put back by the time the caller sees the rejection
    expect(file.failure).toBe('ENOSPC: no space left on device');
    expect(errors).toEqual([]); // the caller of writeNow handles its own error
    expect(disk.started).toEqual(['reload config']);

    clock.advance(DELAY - 1);
    await settle();
    expect(disk.started).toEqual(['reload config']);
    clock.advance(1);
    await settle();
    expect(disk.started).toEqual(['reload config', 'runtime change']);
    expect(produced).toEqual(['runtime change']);
    expect(disk.content).toBe('runtime change');
    expect(file.failure).toBeUndefined();
    expect(file.dirty).toBe(false);
  });

  test('a failed writeNow does not put back a dropped content when something newer was scheduled meanwhile', async () => {
    const { clock, disk, file, produced, producer } = setup();
    disk.hold = true;
    file.schedule(producer('dropped'));
    const now = file.writeNow('reload config');
    const rejected = expect(now).rejects.toThrow('EIO');
    await settle();
    file.schedule(producer('newer'));
    disk.inFlight[0]!.reject(new Error('EIO'));
    await rejected;
    disk.hold = false;
    clock.advance(DELAY);
    await settle();
    expect(produced).toEqual(['newer']);
    expect(disk.content).toBe('newer');
  });

  // A scheduled write that failed while a writeNow waited behind it used to put its (older) content back as
  // pending, and the retry timer then wrote it over writeNow's newer content (found by this test).
  test("a scheduled write failing while writeNow waits behind it does not land after writeNow's content", async () => {
    const { clock, disk, file, producer } = setup();
    disk.hold = true;
    file.schedule(producer('old'));
    clock.advance(DELAY);
    await settle();
    const now = file.writeNow('new');
    disk.inFlight[0]!.reject(new Error('EIO'));
    await settle();
    disk.inFlight[0]!.resolve();
    await now;
    disk.hold = false;
    clock.advance(5000);
    await settle();
    expect(disk.content).toBe('new');
  });

  test('when both fail, the scheduled content (what runs if the caller gives up its reload) is pending again', async () => {
    const { clock, disk, file, producer } = setup();
    disk.hold = true;
    file.schedule(producer('old'));
    clock.advance(DELAY);
    await settle();
    const now = file.writeNow('new');
    disk.inFlight[0]!.reject(new Error('EIO'));
    await settle();
    disk.inFlight[0]!.reject(new Error('EIO'));
    await expect(now).rejects.toThrow('EIO');
    disk.hold = false;
    clock.advance(5000);
    await settle();
    expect(disk.content).toBe('old');
  });
});

describe('CoalescedFile: failures', () => {
  test('a failing scheduled write is retried with growing delays (delay × 2^failures); failure holds the error until a write succeeds', async () => {
    const { clock, disk, errors, file, produced, producer } = setup();
    let failuresLeft = 3;
    disk.failWith = () => (failuresLeft-- > 0 ? new Error('EROFS: read-only file system') : undefined);
    file.schedule(producer('cfg'));

    const writesAt: number[] = [];
    const countWrites = async (until: number) => {
      while (clock.now() < until) {
        clock.advance(1);
        await settle();
        while (writesAt.length < disk.started.length) writesAt.push(clock.now());
      }
    };
    await countWrites(DELAY);
    expect(writesAt).toEqual([DELAY]);
    expect(file.failure).toBe('EROFS: read-only file system');
    expect(file.dirty).toBe(true);
    expect(errors).toEqual([{ file: FILE, message: 'EROFS: read-only file system' }]);

    await countWrites(DELAY + 2 * DELAY + 4 * DELAY + 8 * DELAY + 50);
    // Retries 200, 400 and 800 ms after each failure; the fourth attempt succeeds.
    expect(writesAt).toEqual([DELAY, 3 * DELAY, 7 * DELAY, 15 * DELAY]);
    expect(errors).toHaveLength(3);
    expect(disk.content).toBe('cfg');
    expect(file.failure).toBeUndefined();
    expect(file.dirty).toBe(false);
    expect(clock.pending).toBe(0);
    // The content was produced for every attempt (the same producer, kept while failing).
    expect(produced).toEqual(['cfg', 'cfg', 'cfg', 'cfg']);
  });

  test('the retry delay is capped at 5000 ms, and a success resets the backoff', async () => {
    const { clock, disk, file, producer } = setup(1000);
    let failing = true;
    disk.failWith = () => (failing ? new Error('ENOSPC') : undefined);
    file.schedule(producer('cfg'));
    clock.advance(1000); // attempt 1 fails: next in 2000
    await settle();
    clock.advance(2000); // attempt 2 fails: next in 4000
    await settle();
    clock.advance(4000); // attempt 3 fails: next in min(8000, 5000)
    await settle();
    expect(disk.started).toHaveLength(3);
    expect(clock.nextAt).toBe(clock.now() + 5000);
    clock.advance(5000); // attempt 4 fails: still 5000
    await settle();
    expect(disk.started).toHaveLength(4);
    expect(clock.nextAt).toBe(clock.now() + 5000);
    failing = false;
    clock.advance(5000);
    await settle();
    expect(disk.started).toHaveLength(5);
    expect(file.failure).toBeUndefined();

    // After a success, a later failure starts from delay × 2 again.
    failing = true;
    file.schedule(producer('cfg2'));
    clock.advance(1000);
    await settle();
    expect(disk.started).toHaveLength(6);
    expect(clock.nextAt).toBe(clock.now() + 2000);
  });

  test('content scheduled while writes fail replaces the failed one: the retry writes the newest', async () => {
    const { clock, disk, file, produced, producer } = setup();
    disk.failWith = (c) => (c === 'a' ? new Error('EIO') : undefined);
    file.schedule(producer('a'));
    clock.advance(DELAY);
    await settle();
    expect(file.failure).toBe('EIO');
    file.schedule(producer('b'));
    clock.advance(2 * DELAY);
    await settle();
    expect(disk.content).toBe('b');
    expect(produced).toEqual(['a', 'b']);
    expect(file.failure).toBeUndefined();
    expect(file.dirty).toBe(false);
  });
});
