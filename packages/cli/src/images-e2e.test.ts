/**
 * Images end to end on real parts: a gateway, a runc worker, real `docker-registry`s on loopback
 * (one behind Basic auth, one behind token auth whose token service wants Basic credentials),
 * workspace secrets as pull credentials, and Dockerfiles and local files built by our builder.
 * Every file is checked by running a container from the built image.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { Client, Image, type Container } from "beta9";
import type { Image as ImageInfo, ImageSpec } from "@beta9/protocol";
import { startGateway, type RunningGateway } from "@beta9/gateway";
import { runcUnavailableReason, startWorker, type StartedWorker } from "@beta9/worker";
import { buildShellImage, captureHostState, ownedBy, RegistryClient, startRegistry, type TestRegistry } from "@beta9/worker/testing";
import { PYTHON_SDK_DIR } from "./python.js";

const skip = runcUnavailableReason();
const dir = mkdtempSync(join(tmpdir(), "beta9-images-e2e-"));
const USER = "puller";
const PASSWORD = "s3cret-Pa55word";
let gateway: RunningGateway;
let worker: StartedWorker;
let client: Client;
let basic: TestRegistry;
let bearer: TestRegistry;
let basicRef: string;
let bearerRef: string;
const hostBefore = captureHostState();
const cli = fileURLToPath(new URL("./main.js", import.meta.url));

function beta9(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], {
      env: { ...process.env, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: gateway.bootstrap!.token.key, BETA9_CONFIG_DIR: join(dir, "cli-cfg"), NO_COLOR: "1" },
    }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

async function build(spec: ImageSpec, as = client): Promise<{ image: ImageInfo; lines: string[] }> {
  let image = await as.buildImage(spec);
  const lines: string[] = [];
  if (image.status === "building") {
    for await (const e of as.followImageBuild(image.id)) {
      if (e.kind === "log") lines.push(e.line.line);
      else image = e.image;
    }
  }
  return { image, lines };
}

/** Runs `script` with /bin/sh in a container of `imageId`; its stdout lines. */
async function runIn(imageId: string, script: string): Promise<string[]> {
  const c = await client.runContainer({ imageId, command: ["/bin/sh", "-c", script] });
  let done: Container = c;
  while (done.state !== "EXITED") {
    await new Promise((r) => setTimeout(r, 20));
    done = await client.getContainer(c.id);
  }
  const logs = await client.containerLogs(c.id);
  assert.deepEqual([done.reason, done.exitCode], ["exited", 0], logs.map((l) => l.line).join("\n"));
  return logs.filter((l) => l.stream === "stdout").map((l) => l.line);
}

function write(root: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), content);
  }
}

const apiError = (code: string, message: RegExp) => (err: unknown) => {
  assert.equal((err as { code?: string }).code, code, String(err));
  assert.match((err as Error).message, message);
  return true;
};

describe("images end to end (private registries, Dockerfiles, local files)", { skip }, () => {
  before(async () => {
    gateway = await startGateway({ dataDir: join(dir, "gw"), port: 0, logLevel: "silent", workerTimeoutMs: 3000 });
    worker = await startWorker({
      gatewayUrl: gateway.url, token: await gateway.localWorkerToken(), stateDir: join(dir, "worker"),
      logger: pino({ level: "silent" }), runtime: "runc", name: "e2i", subnet: "10.219.236.0/24", workerId: "e2i",
      allowPrivateRegistries: true, // the test registries listen on loopback
    });
    await worker.connected;
    client = new Client({ gateway: gateway.url, token: gateway.bootstrap!.token.key });
    basic = await startRegistry({ htpasswd: { [USER]: PASSWORD } });
    bearer = await startRegistry({ auth: true, users: { [USER]: PASSWORD } });
    basicRef = `${basic.host}/team/shell:v1`;
    bearerRef = `${bearer.host}/team/shell:v1`;
    for (const [registry, ref] of [[basic, basicRef], [bearer, bearerRef]] as const) {
      const pusher = new RegistryClient({ allowPrivate: true, auth: { registry: registry.host, credentials: { username: USER, password: PASSWORD, label: "test" } } });
      try {
        await pusher.push(ref, await buildShellImage(dir, registry === basic ? "basic" : "bearer"));
      } finally {
        await pusher.close();
      }
    }
  });

  after(async () => {
    await client?.close();
    await worker?.close(1000);
    await gateway?.close();
    await basic?.stop();
    await bearer?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a private base pulls with workspace secrets: a missing one is SECRET_NOT_FOUND, wrong values REGISTRY_AUTH_FAILED; no value is shown anywhere", async () => {
    const spec = Image.fromRegistry(basicRef, { credentials: { username: "REG_USER", password: "REG_PASS" } }).run("cat /etc/marker > /pulled.txt").toSpec();
    await assert.rejects(client.buildImage(spec), apiError("SECRET_NOT_FOUND", /No secret REG_USER in this workspace/));
    await client.createSecret("REG_USER", USER);
    await client.createSecret("REG_PASS", "wrong-password");
    const refused = await build(spec);
    assert.equal(refused.image.status, "failed");
    assert.match(refused.image.error ?? "", new RegExp(`^REGISTRY_AUTH_FAILED: ${basic.host.replace(/\./g, "\\.")} refused the credentials in secrets REG_USER/REG_PASS`));

    await client.updateSecret("REG_PASS", PASSWORD);
    const { image, lines } = await build(spec);
    assert.equal(image.status, "ready", `${image.error}\n${lines.join("\n")}`);
    assert.equal(image.id, refused.image.id, "the secret names, not their values, are in the id: the failed image is built again");
    assert.deepEqual(await runIn(image.id, "cat /pulled.txt"), ["basic"]);
    const shown = JSON.stringify([await client.getImage(image.id), await client.listImages(), lines, refused]);
    assert.ok(!shown.includes(PASSWORD) && !shown.includes("wrong-password"), "secret values never appear in images, lists or logs");
    assert.deepEqual((await client.getImage(image.id)).spec, spec, "the image records secret names only");

    // Another workspace naming the same secrets gets its own image, pulled with its own secrets.
    const other = await client.createWorkspace("images-e2e-other");
    const otherClient = new Client({ gateway: gateway.url, token: other.token.key });
    try {
      await assert.rejects(otherClient.buildImage(spec), apiError("SECRET_NOT_FOUND", /REG_USER/));
      await otherClient.createSecret("REG_USER", USER);
      await otherClient.createSecret("REG_PASS", "guessed");
      const theirs = await build(spec, otherClient);
      assert.notEqual(theirs.image.id, image.id);
      assert.match(theirs.image.error ?? "", /^REGISTRY_AUTH_FAILED/);
    } finally {
      await otherClient.close();
    }
  });

  test("a base behind token auth pulls with one secret holding user:password", async () => {
    await client.createSecret("REG_AUTH", `${USER}:${PASSWORD}`);
    const { image, lines } = await build(Image.fromRegistry(bearerRef, { credentials: { secret: "REG_AUTH" } }).run("cat /etc/marker > /pulled.txt").toSpec());
    assert.equal(image.status, "ready", `${image.error}\n${lines.join("\n")}`);
    assert.ok(bearer.authorizedTokenRequests() > 0);
    assert.deepEqual(await runIn(image.id, "cat /pulled.txt"), ["bearer"]);
  });

  test("a Dockerfile with every supported instruction builds; its files, owners, modes and env are in the image", async () => {
    const ctx = join(dir, "ctx");
    write(ctx, {
      "Dockerfile": [
        "# syntax=docker/dockerfile:1",
        "ARG BASE_REF",
        "FROM ${BASE_REF}",
        "ARG GREETING=hello",
        "ARG FLAVOR",
        "ENV APP_HOME=/srv/app \\",
        "    # a comment inside a continued instruction",
        '    PATH="/srv/app/bin:$PATH" GREETING_ENV="${GREETING} world"',
        "WORKDIR $APP_HOME",
        'RUN echo "flavor=$FLAVOR greeting=$GREETING" > build-args.txt && \\',
        '    echo "cwd=$(pwd)" >> build-args.txt',
        'RUN ["/bin/sh", "-c", "echo exec-form > /srv/app/exec.txt"]',
        "COPY app/ ./",
        "COPY config.ini /etc/app/config.ini",
        "COPY notes.txt data.txt /srv/data/",
        "ADD readme.md .",
        "COPY --chown=app:app owned.txt /home/app/",
        "USER app",
        "RUN id -u > /home/app/ids.txt && id -g >> /home/app/ids.txt",
        "USER root",
        'SHELL ["/bin/sh", "-e", "-c"]',
        "RUN echo shell-instruction > /srv/app/shell.txt",
        "EXPOSE 8000",
        "LABEL purpose=test",
        'CMD ["python3", "main.py"]',
      ].join("\n"),
      ".dockerignore": "secret.env\n**/cache\n",
      "app/main.py": "print('main')\n",
      "app/bin/tool.sh": "#!/bin/sh\necho tool\n",
      "app/cache/junk": "ignored\n",
      "config.ini": "[app]\nmode=e2e\n",
      "notes.txt": "notes\n",
      "data.txt": "data\n",
      "readme.md": "# readme\n",
      "owned.txt": "owned by app\n",
      "secret.env": "TOKEN=never-copied\n",
    });
    chmodSync(join(ctx, "app/bin/tool.sh"), 0o755);
    write(join(dir, "local"), { "local.txt": "a local file\n", "tree/a.txt": "a\n", "tree/sub/b.txt": "b\n" });
    const image = Image.fromDockerfile(join(ctx, "Dockerfile"), {
      buildArgs: { BASE_REF: basicRef, FLAVOR: "e2e" }, credentials: { username: "REG_USER", password: "REG_PASS" },
    }).env({ EXTRA: "from-env" }).addLocalFile(join(dir, "local", "local.txt"), "/extra/renamed.txt").addLocalDir(join(dir, "local", "tree"), "/extra/tree");
    const { image: built, lines } = await build(image.toSpec());
    assert.equal(built.status, "ready", `${built.error}\n${lines.join("\n")}`);
    const out = await runIn(built.id, [
      "cat /srv/app/build-args.txt /srv/app/exec.txt /srv/app/main.py /etc/app/config.ini /srv/data/notes.txt /srv/data/data.txt",
      "cat /srv/app/readme.md /home/app/owned.txt /home/app/ids.txt /srv/app/shell.txt /extra/renamed.txt /extra/tree/a.txt /extra/tree/sub/b.txt",
      "stat -c '%n %u:%g %a' /home/app/owned.txt /srv/app/bin/tool.sh /etc/app/config.ini",
      'echo "PATH=$PATH GREETING_ENV=$GREETING_ENV BASE=$BASE_MARKER EXTRA=$EXTRA"',
      "ls -A /srv/app",
    ].join("; "));
    assert.deepEqual(out, [
      "flavor=e2e greeting=hello", "cwd=/srv/app", "exec-form", "print('main')", "[app]", "mode=e2e", "notes", "data",
      "# readme", "owned by app", "1000", "1000", "shell-instruction", "a local file", "a", "b",
      "/home/app/owned.txt 1000:1000 644", "/srv/app/bin/tool.sh 0:0 755", "/etc/app/config.ini 0:0 644",
      "PATH=/srv/app/bin:/usr/bin:/bin GREETING_ENV=hello world BASE=from-the-base-config EXTRA=from-env",
      "bin", "build-args.txt", "exec.txt", "main.py", "readme.md", "shell.txt",
    ]);
  });

  test("a Dockerfile with HEALTHCHECK fails naming the line, in the SDK and at the gateway", async () => {
    const path = join(dir, "health", "Dockerfile");
    write(dirname(path), { Dockerfile: `FROM ${basicRef}\nRUN true\n\nHEALTHCHECK CMD true\n` });
    assert.throws(() => Image.fromDockerfile(path).toSpec(), /Dockerfile line 4: HEALTHCHECK: not supported/);
    await assert.rejects(client.buildImage({ base: { kind: "dockerfile", dockerfile: `FROM ${basicRef}\nRUN true\n\nHEALTHCHECK CMD true\n` }, steps: [], env: {} }),
      apiError("IMAGE_SPEC_INVALID", /Dockerfile line 4: HEALTHCHECK: not supported/));
  });

  test("the Python SDK: from_dockerfile (parsed by the gateway) and add_local_file upload their files and build", async () => {
    const ctx = join(dir, "py");
    write(ctx, { "Dockerfile": `FROM ${bearerRef}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copied.txt\n`, "hello.txt": "hello from python\n", "extra.txt": "extra\n" });
    const script = [
      "import json, sys",
      "from beta9 import Client, Image",
      "img = Image.from_dockerfile(sys.argv[1], credentials={'secret': 'REG_AUTH'}).add_local_file(sys.argv[2], '/extra.txt')",
      "spec = img.to_spec()",
      "c = Client()",
      "info = c.build_image(spec)",
      "if info['status'] == 'building':",
      "    for name, data in c.follow_image(info['id']):",
      "        if name == 'end':",
      "            info = data",
      "            break",
      "print(json.dumps({'id': info['id'], 'status': info['status'], 'error': info.get('error'), 'base': spec['base']['kind']}))",
    ].join("\n");
    const out = await new Promise<string>((resolve, reject) => {
      execFile("python3", ["-c", script, join(ctx, "Dockerfile"), join(ctx, "extra.txt")], {
        env: { ...process.env, PYTHONPATH: PYTHON_SDK_DIR, BETA9_GATEWAY: gateway.url, BETA9_TOKEN: gateway.bootstrap!.token.key, BETA9_CONFIG_DIR: join(dir, "py-cfg") },
      }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    });
    const result = JSON.parse(out.trim().split("\n").pop()!) as { id: string; status: string; error: string | null; base: string };
    assert.deepEqual([result.status, result.base], ["ready", "dockerfile"], result.error ?? "");
    assert.deepEqual(await runIn(result.id, "cat /copied.txt /extra.txt"), ["hello from python", "extra"]);
  });

  test("beta9 image delete: the image leaves the list, its packed file goes, a deployment's image is refused, and asking again builds it again", async () => {
    const spec = Image.fromRegistry(bearerRef, { credentials: { secret: "REG_AUTH" } }).run("echo built > /built.txt").toSpec();
    const { image } = await build(spec);
    assert.equal(image.status, "ready", image.error ?? "");
    const packed = join(dir, "gw", "images", `${image.id}.sqfs`);
    assert.ok(existsSync(packed), "the packed image is on the gateway's disk");
    const { stub } = await client.createStub({ name: "uses-image", type: "endpoint/deployment", config: { imageId: image.id } });
    const deployment = await client.createDeployment({ stubId: stub.id, name: "uses-image" });
    const refused = await beta9(["image", "delete", image.id]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /CONFLICT: .*used by deployment uses-image v1; stop it first \(beta9 deployment stop uses-image\)/);
    assert.equal((await beta9(["deployment", "stop", deployment.id])).code, 0);
    const deleted = await beta9(["image", "delete", image.id]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, new RegExp(`deleted image ${image.id}`));
    const listed = JSON.parse((await beta9(["image", "list", "--json"])).stdout) as { id: string }[];
    assert.ok(!listed.some((i) => i.id === image.id), "gone from the list");
    assert.equal(existsSync(packed), false, "no workspace uses it: its packed file is gone");
    const again = await client.buildImage(spec);
    assert.equal(again.status, "building", "asked for again, it is built again");
    assert.deepEqual(await runIn((await build(spec)).image.id, "cat /built.txt"), ["built"]);
  });
});

test("after everything stopped, the host holds no container, mount, netns or veth of this file's worker", { skip }, () => {
  assert.deepEqual(ownedBy(captureHostState(), ["e2i"], [dir]), ownedBy(hostBefore, ["e2i"], [dir]));
});
