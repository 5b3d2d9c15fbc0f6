package torchonspark.minicluster;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.minikdc.MiniKdc;
import org.apache.kerby.KOptions;
import org.apache.kerby.kerberos.kerb.client.KrbClient;
import org.apache.kerby.kerberos.kerb.client.KrbOption;
import org.apache.hadoop.fs.FileUtil;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.protocol.HdfsConstants;
import org.apache.hadoop.util.ShutdownHookManager;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;
import org.apache.hadoop.yarn.server.nodemanager.NodeManager;
import org.apache.hadoop.yarn.server.resourcemanager.ResourceManager;
import org.apache.hadoop.yarn.server.resourcemanager.security.DelegationTokenRenewer;

/**
 * HDFS (a NameNode and DataNodes) and YARN (a ResourceManager and NodeManagers) in one JVM, for the
 * tests and for trying the YARN path on one machine. Started by `make minicluster` or tests/hadoop.py:
 *
 * <pre>
 *   java @tests/minicluster/jvm.options @tests/minicluster/target/classpath.args \
 *       torchonspark.minicluster.MiniCluster --conf-dir DIR --base-dir DIR [options]
 * </pre>
 *
 * Stdout carries one line, once both clusters serve and the client configuration is written:
 * {@code READY hdfs=hdfs://localhost:PORT rm=localhost:PORT}; with --secure it goes on with
 * {@code krb5conf=FILE principal=USER@REALM keytab=FILE ccache=FILE}.
 * Errors go to stderr, everything else to BASE_DIR/minicluster.log. It stops when its stdin closes
 * (so a parent that dies cannot leave it behind) or on SIGTERM / Ctrl-C.
 *
 * <p>Until then each line on stdin is a fault for a test to inject (HDFS's own test hooks do the
 * work), answered by one line on stdout, {@code OK ...} or {@code ERROR ...}:
 * <pre>
 *   restart-namenode             stop the NameNode and start it again (same port, same metadata)
 *   stop-datanode I              stop DataNode I (0-based), as a crashed host would be
 *   start-datanode               start the DataNode stopped last, on its old port and data
 *   set-space-quota PATH BYTES   an HDFS space quota on a folder; BYTES -1 removes it
 *   kinit NAME FILE SECONDS      (--secure) a ticket cache for principal NAME (made if new), valid SECONDS
 * </pre>
 *
 * <p>With --secure both clusters are Kerberized, as a production cluster is: a KDC (MiniKdc), Kerberos
 * authentication of every RPC with privacy (encryption), block access tokens, SASL data transfer with
 * privacy and encrypted block data, a secure ResourceManager and NodeManagers (so Spark has to get and
 * ship delegation tokens), and short delegation-token lifetimes if asked. Every daemon logs in as one
 * service principal, {@code hadoop/localhost}: in one JVM they share one Kerberos login. Beside the
 * client configuration it writes krb5.conf, the user's keytab ({@code user.keytab}, principal the
 * OS user's name) and a ticket cache holding the user's ticket ({@code krb5cc}), so that no kinit is
 * needed: {@code KRB5_CONFIG=DIR/krb5.conf KRB5CCNAME=DIR/krb5cc} for native clients, and
 * {@code -Djava.security.krb5.conf=DIR/krb5.conf} for Java ones, which ignore KRB5_CONFIG.
 */
public final class MiniCluster {

  private static final String USAGE = String.join("\n",
      "usage: MiniCluster --conf-dir DIR --base-dir DIR [--datanodes N] [--nodemanagers N]",
      "                   [--nm-memory-mb MB] [--nm-vcores N] [--nm-gpus N] [--ignore-stdin]",
      "                   [--secure [--token-renew-s S] [--token-max-lifetime-s S]]",
      "  --conf-dir      where core-site.xml, hdfs-site.xml, yarn-site.xml and resource-types.xml",
      "                  are written: the HADOOP_CONF_DIR of clients",
      "  --base-dir      data and logs (HDFS is formatted afresh by each start)",
      "  --nm-memory-mb  memory each NodeManager offers (default 4096: a Spark AM and two executors)",
      "  --nm-gpus       yarn.io/gpu each NodeManager offers (default 2; counted, no real GPU needed)",
      "  --ignore-stdin  run until SIGTERM / Ctrl-C only (for a background job with no stdin)",
      "  --secure        Kerberos, wire encryption and delegation tokens (see the class comment)",
      "  --token-renew-s, --token-max-lifetime-s",
      "                  the HDFS delegation tokens' renewal interval and maximum lifetime (default",
      "                  1 and 7 days, as Hadoop's); short ones let a test outlive a token");

  private static final String GPU = "yarn.io/gpu";

  /** The flags; plain parsing, one value each. */
  static final class Options {
    File confDir;
    File baseDir;
    int dataNodes = 2;
    int nodeManagers = 2;
    int nmMemoryMb = 4096;
    int nmVcores = 4;
    int nmGpus = 2;
    boolean ignoreStdin = false;
    boolean secure = false;
    long tokenRenewS = TimeUnit.DAYS.toSeconds(1);
    long tokenMaxLifetimeS = TimeUnit.DAYS.toSeconds(7);

    static Options parse(String[] args) {
      Options options = new Options();
      for (int i = 0; i < args.length; i++) {
        String flag = args[i];
        if (flag.equals("--ignore-stdin")) {
          options.ignoreStdin = true;
          continue;
        }
        if (flag.equals("--secure")) {
          options.secure = true;
          continue;
        }
        if (i + 1 >= args.length) {
          throw new IllegalArgumentException(flag + " needs a value");
        }
        String value = args[++i];
        switch (flag) {
          case "--conf-dir": options.confDir = new File(value).getAbsoluteFile(); break;
          case "--base-dir": options.baseDir = new File(value).getAbsoluteFile(); break;
          case "--datanodes": options.dataNodes = atLeast(1, flag, value); break;
          case "--nodemanagers": options.nodeManagers = atLeast(1, flag, value); break;
          case "--nm-memory-mb": options.nmMemoryMb = atLeast(1, flag, value); break;
          case "--nm-vcores": options.nmVcores = atLeast(1, flag, value); break;
          case "--nm-gpus": options.nmGpus = atLeast(0, flag, value); break;
          case "--token-renew-s": options.tokenRenewS = atLeast(1, flag, value); break;
          case "--token-max-lifetime-s": options.tokenMaxLifetimeS = atLeast(1, flag, value); break;
          default: throw new IllegalArgumentException("unknown flag " + flag);
        }
      }
      if (options.confDir == null || options.baseDir == null) {
        throw new IllegalArgumentException("--conf-dir and --base-dir are required");
      }
      return options;
    }

    private static int atLeast(int least, String flag, String value) {
      int number;
      try {
        number = Integer.parseInt(value);
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException(flag + " takes a whole number, not " + value);
      }
      if (number < least) {
        throw new IllegalArgumentException(flag + " must be at least " + least + ", not " + value);
      }
      return number;
    }
  }

  private final Options options;
  private boolean yarnStopped = false;
  private final Deque<MiniDFSCluster.DataNodeProperties> stoppedDataNodes = new ArrayDeque<>();
  private MiniDFSCluster dfs;
  private MiniYARNCluster yarn;
  private String hdfsUrl;
  private Kerberos kerberos;  // with --secure only

  /**
   * The KDC and what clients need of it. The user's principal is the OS user's name, so that paths
   * and owners on HDFS read as they would for that person on a real cluster.
   */
  static final class Kerberos {
    static final String SERVICE = "hadoop/localhost";
    final MiniKdc kdc;
    final File serviceKeytab;
    final File krb5Conf;      // the client copy, in the configuration folder
    final File userKeytab;
    final File ticketCache;
    final String user = System.getProperty("user.name");

    Kerberos(File baseDir, File confDir) throws Exception {
      File kdcDir = new File(baseDir, "kdc");
      FileUtil.fullyDelete(kdcDir);
      kdcDir.mkdirs();
      Properties kdcConf = MiniKdc.createConf();
      // Kerby refuses tickets shorter than its minimum lifetime: the kinit command may ask for
      // seconds (a ticket that expires during a test).
      kdcConf.setProperty(MiniKdc.MIN_TICKET_LIFETIME, "1");
      kdc = new MiniKdc(kdcConf, kdcDir);
      kdc.start();  // also points this JVM's java.security.krb5.conf at the KDC's krb5.conf
      serviceKeytab = new File(kdcDir, "hadoop.keytab");
      // HTTP/localhost: the web apps' SPNEGO principal, which a secure NameNode asks for.
      kdc.createPrincipal(serviceKeytab, SERVICE, "HTTP/localhost");
      confDir.mkdirs();
      krb5Conf = new File(confDir, "krb5.conf");
      writeKrb5Conf();
      userKeytab = new File(confDir, "user.keytab");
      userKeytab.delete();
      kdc.createPrincipal(userKeytab, user);
      ownerOnly(userKeytab);
      ticketCache = new File(confDir, "krb5cc");
      kinit(user, ticketCache, TimeUnit.DAYS.toSeconds(1));
    }

    /**
     * The clients' krb5.conf, written instead of MiniKdc's so that MIT's library asks DNS nothing: it
     * otherwise looks up the realm's SRV and TXT records (and canonicalizes host names) on every new
     * connection, and on a machine whose resolver does not answer each lookup can stall 5 s.
     */
    private void writeKrb5Conf() throws IOException {
      String realm = kdc.getRealm();
      String text = String.join("\n",
          "[libdefaults]",
          "    default_realm = " + realm,
          "    udp_preference_limit = 1",
          "    dns_lookup_kdc = false",
          "    dns_lookup_realm = false",
          "    dns_uri_lookup = false",
          "    dns_canonicalize_hostname = false",
          "    rdns = false",
          "[realms]",
          "    " + realm + " = {",
          "        kdc = " + kdc.getHost() + ":" + kdc.getPort(),
          "    }",
          "");
      Files.write(krb5Conf.toPath(), text.getBytes(StandardCharsets.UTF_8));
    }

    String principal(String name) {
      return name + "@" + kdc.getRealm();
    }

    /**
     * What kinit -kt KEYTAB NAME would do, with Kerby's client: no Kerberos tools need be installed. A
     * principal other than the user's is made on first use, its keytab kept with the KDC's files.
     */
    void kinit(String name, File cache, long lifetimeS) throws Exception {
      File keytab = name.equals(user) ? userKeytab : new File(kdc.getKrb5conf().getParentFile(), name + ".keytab");
      if (!keytab.exists()) {
        kdc.createPrincipal(keytab, name);
      }
      KrbClient client = new KrbClient();
      client.setKdcRealm(kdc.getRealm());
      client.setKdcHost(kdc.getHost());
      client.setKdcTcpPort(kdc.getPort());
      client.setAllowUdp(false);
      client.init();
      KOptions request = new KOptions();
      request.add(KrbOption.CLIENT_PRINCIPAL, principal(name));
      request.add(KrbOption.USE_KEYTAB, true);
      request.add(KrbOption.KEYTAB_FILE, keytab);
      request.add(KrbOption.LIFE_TIME, (int) lifetimeS);
      cache.delete();
      client.storeTicket(client.requestTgt(request), cache);
      ownerOnly(cache);
    }

    /** Kerberos settings for the daemons' and the clients' configurations alike. */
    void secure(Configuration conf, Options options) {
      String service = principal(SERVICE);
      conf.set("hadoop.security.authentication", "kerberos");
      conf.setBoolean("hadoop.security.authorization", true);
      conf.set("hadoop.rpc.protection", "privacy");
      conf.set(DFSConfigKeys.DFS_NAMENODE_KERBEROS_PRINCIPAL_KEY, service);
      conf.set(DFSConfigKeys.DFS_NAMENODE_KEYTAB_FILE_KEY, serviceKeytab.getPath());
      conf.set(DFSConfigKeys.DFS_DATANODE_KERBEROS_PRINCIPAL_KEY, service);
      conf.set(DFSConfigKeys.DFS_DATANODE_KEYTAB_FILE_KEY, serviceKeytab.getPath());
      conf.set(DFSConfigKeys.DFS_WEB_AUTHENTICATION_KERBEROS_PRINCIPAL_KEY, principal("HTTP/localhost"));
      conf.set(DFSConfigKeys.DFS_WEB_AUTHENTICATION_KERBEROS_KEYTAB_KEY, serviceKeytab.getPath());
      conf.setBoolean(DFSConfigKeys.DFS_BLOCK_ACCESS_TOKEN_ENABLE_KEY, true);
      conf.set(DFSConfigKeys.DFS_DATA_TRANSFER_PROTECTION_KEY, "privacy");
      conf.setBoolean(DFSConfigKeys.DFS_ENCRYPT_DATA_TRANSFER_KEY, true);
      // AES, as Hadoop's guide advises for encrypted transfer: without a cipher suite the blocks are
      // encrypted by SASL's DIGEST-MD5 itself (3DES), several times slower.
      conf.set(DFSConfigKeys.DFS_ENCRYPT_DATA_TRANSFER_CIPHER_SUITES_KEY, "AES/CTR/NoPadding");
      // SASL on the data port instead of the privileged ports (and jsvc) a real DataNode would need.
      conf.setBoolean(DFSConfigKeys.IGNORE_SECURE_PORTS_FOR_TESTING_KEY, true);
      conf.setLong(DFSConfigKeys.DFS_NAMENODE_DELEGATION_TOKEN_RENEW_INTERVAL_KEY,
          TimeUnit.SECONDS.toMillis(options.tokenRenewS));
      conf.setLong(DFSConfigKeys.DFS_NAMENODE_DELEGATION_TOKEN_MAX_LIFETIME_KEY,
          TimeUnit.SECONDS.toMillis(options.tokenMaxLifetimeS));
      conf.set(YarnConfiguration.RM_PRINCIPAL, service);
      conf.set(YarnConfiguration.RM_KEYTAB, serviceKeytab.getPath());
      conf.set(YarnConfiguration.NM_PRINCIPAL, service);
      conf.set(YarnConfiguration.NM_KEYTAB, serviceKeytab.getPath());
    }

    /** The rest of a client's environment: native clients read KRB5_*, Java ones a system property. */
    String clientExports() {
      return " KRB5_CONFIG=" + krb5Conf + " KRB5CCNAME=" + ticketCache
          + " SPARK_SUBMIT_OPTS=-Djava.security.krb5.conf=" + krb5Conf
          + "\nMiniCluster: Kerberos: the ticket in " + ticketCache + " is " + principal(user)
          + "'s, valid a day; kinit -kt " + userKeytab + " " + principal(user) + " renews it";
    }

    String readyFields() {
      return " krb5conf=" + krb5Conf + " principal=" + principal(user) + " keytab=" + userKeytab
          + " ccache=" + ticketCache;
    }

    private static void ownerOnly(File file) throws IOException {
      Files.setPosixFilePermissions(file.toPath(), java.nio.file.attribute.PosixFilePermissions.fromString("rw-------"));
    }
  }

  private MiniCluster(Options options) {
    this.options = options;
  }

  public static void main(String[] args) throws Exception {
    Options options;
    try {
      options = Options.parse(args);
    } catch (IllegalArgumentException e) {
      System.err.println("MiniCluster: " + e.getMessage() + "\n" + USAGE);
      System.exit(2);
      return;
    }
    // Hadoop prints a few lines to System.out itself; stdout must stay the ready line alone.
    PrintStream readyOut = System.out;
    System.setOut(System.err);

    options.baseDir.mkdirs();
    // Read by log4j.properties and by MiniYARNCluster (its work dir): both must be set before the
    // first Hadoop class loads, or NodeManager dirs land in ./target of whatever the cwd is.
    System.setProperty("minicluster.log.dir", options.baseDir.getPath());
    System.setProperty("test.build.data", new File(options.baseDir, "yarn").getPath());
    // Jetty unpacks each web app (7 of them) into the temporary folder: keep them with the rest, and
    // drop those of a previous run stopped by a signal (HDFS's web apps do not clean up then).
    File tmp = new File(options.baseDir, "tmp");
    FileUtil.fullyDelete(tmp);
    tmp.mkdirs();
    System.setProperty("java.io.tmpdir", tmp.getPath());
    // The shaded Jersey and Guice log through java.util.logging, to stderr, a dozen lines per web app.
    java.util.logging.Logger.getLogger("").setLevel(java.util.logging.Level.SEVERE);

    MiniCluster cluster = new MiniCluster(options);
    // On a signal only YARN is stopped, as its containers are processes of their own that would
    // outlive the JVM; HDFS dies with the JVM (its DataNodes cannot shut down inside a shutdown hook,
    // and the next start formats it anyway). Through Hadoop's hook manager, ahead of its
    // FileSystem-cache hook (priority 10), and bounded, so a hung stop cannot keep the JVM alive.
    ShutdownHookManager.get().addShutdownHook(cluster::stopYarn, 100, 60, TimeUnit.SECONDS);
    try {
      cluster.start();
      cluster.writeClientConf();
    } catch (Throwable t) {
      System.err.println("MiniCluster: failed to start: " + t);
      t.printStackTrace();
      System.exit(1);
    }
    readyOut.println(cluster.readyLine());
    readyOut.flush();
    System.err.println("MiniCluster: up. Clients use: export HADOOP_CONF_DIR=" + options.confDir
        + (cluster.kerberos == null ? "" : cluster.kerberos.clientExports())
        + "\nMiniCluster: logs in " + options.baseDir + " (container logs under yarn/); stop with "
        + (options.ignoreStdin ? "Ctrl-C or SIGTERM" : "Ctrl-C, SIGTERM or by closing stdin (Ctrl-D)"));

    if (options.ignoreStdin) {
      new CountDownLatch(1).await();  // until a signal runs the shutdown hook
    }
    cluster.serveCommands(System.in, readyOut);
    cluster.stop();
    System.exit(0);
  }

  /** Each line of stdin is a command, answered by one line; returns when stdin ends. */
  private void serveCommands(InputStream in, PrintStream out) {
    BufferedReader lines = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
    while (true) {
      String line;
      try {
        line = lines.readLine();
      } catch (IOException e) {
        return;  // a broken stdin is as good as a closed one: the parent is gone
      }
      if (line == null) {
        return;
      }
      if (line.isBlank()) {
        continue;
      }
      String reply;
      try {
        reply = "OK " + command(line.trim().split("\\s+"));
      } catch (Throwable t) {
        t.printStackTrace();
        reply = "ERROR " + String.valueOf(t).replace('\n', ' ');
      }
      out.println(reply);
      out.flush();
    }
  }

  private String command(String[] words) throws Exception {
    switch (words[0] + "/" + (words.length - 1)) {
      case "restart-namenode/0": {
        long started = System.nanoTime();
        dfs.restartNameNode(true);
        dfs.waitActive();
        return "namenode restarted in " + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started) + " ms";
      }
      case "stop-datanode/1": {
        int index = Integer.parseInt(words[1]);
        MiniDFSCluster.DataNodeProperties stopped = dfs.stopDataNode(index);
        if (stopped == null) {
          throw new IllegalArgumentException("no DataNode " + index);
        }
        stoppedDataNodes.push(stopped);
        return "datanode " + index + " stopped";
      }
      case "start-datanode/0": {
        if (stoppedDataNodes.isEmpty()) {
          throw new IllegalStateException("no DataNode is stopped");
        }
        dfs.restartDataNode(stoppedDataNodes.pop(), true);
        dfs.waitActive();
        return "datanode started";
      }
      case "kinit/3": {
        if (kerberos == null) {
          throw new IllegalStateException("kinit needs --secure");
        }
        kerberos.kinit(words[1], new File(words[2]).getAbsoluteFile(), Long.parseLong(words[3]));
        return "ticket cache " + words[2] + " written for " + kerberos.principal(words[1]);
      }
      case "set-space-quota/2": {
        long bytes = Long.parseLong(words[2]);
        dfs.getFileSystem().setQuota(new org.apache.hadoop.fs.Path(words[1]), HdfsConstants.QUOTA_DONT_SET,
            bytes < 0 ? HdfsConstants.QUOTA_RESET : bytes);
        return "space quota of " + words[1] + " " + (bytes < 0 ? "removed" : "set to " + bytes);
      }
      default:
        throw new IllegalArgumentException("unknown command (or wrong number of arguments): "
            + String.join(" ", words));
    }
  }

  private void start() throws Exception {
    Configuration hdfsConf = new Configuration();
    if (options.secure) {
      Configuration.addDefaultResource("minicluster-secure-site.xml");
      kerberos = new Kerberos(options.baseDir, options.confDir);
      kerberos.secure(hdfsConf, options);
    }
    // A stopped DataNode is declared dead after 2 rechecks + 10 heartbeats: 10.5 minutes by default,
    // during which the NameNode keeps placing new blocks on it. 1 s and 2 s make that 14 s, as a
    // test can wait for.
    hdfsConf.setLong(DFSConfigKeys.DFS_HEARTBEAT_INTERVAL_KEY, 1);
    hdfsConf.setInt(DFSConfigKeys.DFS_NAMENODE_HEARTBEAT_RECHECK_INTERVAL_KEY, 2000);
    dfs = new MiniDFSCluster.Builder(hdfsConf, new File(options.baseDir, "hdfs"))
        .numDataNodes(options.dataNodes)
        .build();
    dfs.waitActive();
    hdfsUrl = dfs.getURI().toString();
    if (kerberos != null) {
      // The superuser (the service principal) owns /: open it as /tmp is, and give the user a home.
      org.apache.hadoop.fs.FileSystem fs = dfs.getFileSystem();
      org.apache.hadoop.fs.permission.FsPermission open = new org.apache.hadoop.fs.permission.FsPermission((short) 01777);
      fs.setPermission(new org.apache.hadoop.fs.Path("/"), open);
      org.apache.hadoop.fs.Path home = new org.apache.hadoop.fs.Path("/user/" + kerberos.user);
      fs.mkdirs(home);
      fs.setOwner(home, kerberos.user, null);
    }

    yarn = new MiniYARNCluster("yarn", 1, options.nodeManagers, 1, 1) {
      @Override
      protected ResourceManager createResourceManager() {
        return new ResourceManager() {
          @Override
          protected void doSecureLogin() {
            // as MiniYARNCluster's own: the daemons share the JVM's one Kerberos login
          }

          @Override
          protected DelegationTokenRenewer createDelegationTokenRenewer() {
            // Hadoop 3.3.4's renewer-timeout tracker spins on an empty map, a whole core for the
            // cluster's life on a secure cluster (YARN-11178, fixed in 3.3.5); it only retries
            // renewals that hang, which a mini cluster never sees.
            DelegationTokenRenewer renewer = super.createDelegationTokenRenewer();
            renewer.setDelegationTokenRenewerPoolTracker(false);
            return renewer;
          }
        };
      }
    };
    yarn.init(yarnConf());
    yarn.start();
    // MiniYARNCluster may return before the RM has put its bound port into the configuration
    // (Spark's YARN suite waits for the same thing).
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (rmAddress().endsWith(":0")) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("the ResourceManager did not bind a port in 30 s");
      }
      Thread.sleep(100);
    }
    if (!yarn.waitForNodeManagersToConnect(60_000)) {
      throw new IllegalStateException("the NodeManagers did not register in 60 s");
    }
  }

  private YarnConfiguration yarnConf() {
    YarnConfiguration conf = new YarnConfiguration();
    conf.set("fs.defaultFS", hdfsUrl);
    if (kerberos != null) {
      kerberos.secure(conf, options);  // the RM renews the apps' HDFS tokens: it needs HDFS's too
    }

    // The minicluster jar has no capacity-scheduler.xml: one queue with the whole cluster.
    conf.set("yarn.scheduler.capacity.root.queues", "default");
    conf.setInt("yarn.scheduler.capacity.root.default.capacity", 100);
    conf.setInt("yarn.scheduler.capacity.root.default.maximum-capacity", 100);
    conf.setFloat("yarn.scheduler.capacity.root.default.user-limit-factor", 1);
    conf.set("yarn.scheduler.capacity.root.default.state", "RUNNING");
    conf.set("yarn.scheduler.capacity.root.default.acl_submit_applications", "*");
    conf.set("yarn.scheduler.capacity.root.default.acl_administer_queue", "*");
    // At the default 10% of a small cluster no AM fits, and every app waits in ACCEPTED forever.
    conf.setFloat("yarn.scheduler.capacity.maximum-am-resource-percent", 1.0f);
    // One host: waiting for node-local containers only delays.
    conf.setInt("yarn.scheduler.capacity.node-locality-delay", -1);
    // Hadoop's GPU guide requires it: the default calculator weighs memory alone, and YARN would
    // then place containers on nodes whose GPUs are all taken.
    conf.set("yarn.scheduler.capacity.resource-calculator",
        "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator");

    // MiniYARNCluster sets each NodeManager's memory from its own key, not the usual one.
    conf.setInt("yarn.minicluster.yarn.nodemanager.resource.memory-mb", options.nmMemoryMb);
    conf.setInt(YarnConfiguration.NM_PMEM_MB, options.nmMemoryMb);
    conf.setInt(YarnConfiguration.NM_VCORES, options.nmVcores);
    // Spark asks for its heap plus at least 384 MB: with the default 1024 MB rounding, a 1.4 GB
    // container would take 2 GB.
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 128);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB, options.nmMemoryMb);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES, options.nmVcores);
    // Memory is only a promise on one shared machine: never kill a container for exceeding it.
    conf.setBoolean(YarnConfiguration.NM_PMEM_CHECK_ENABLED, false);
    conf.setBoolean(YarnConfiguration.NM_VMEM_CHECK_ENABLED, false);
    // A nearly full developer disk must not mark every NodeManager unhealthy (no containers then).
    conf.setFloat(YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 100.0f);
    // A stopping NodeManager waits this (plus 1.25 s) for its apps, finished ones too, as their logs
    // are kept: 5 s by default. Containers here write their pid at once, so 2 s is plenty.
    conf.setLong(YarnConfiguration.NM_PROCESS_KILL_WAIT_MS, 2000);

    // GPUs as a countable resource, as the GPU plugin would declare them, without needing one:
    // Spark asks YARN for yarn.io/gpu when spark.executor.resource.gpu.amount is set.
    conf.set(YarnConfiguration.RESOURCE_TYPES, GPU);
    conf.setInt(YarnConfiguration.NM_RESOURCES_PREFIX + GPU, options.nmGpus);

    // Containers run {{JAVA_HOME}}/bin/java with JAVA_HOME from the NodeManager's environment,
    // which a JVM started by plain `java` may lack: then they get this JVM's Java.
    String adminEnv = YarnConfiguration.DEFAULT_NM_ADMIN_USER_ENV;
    if (System.getenv("JAVA_HOME") == null) {
      adminEnv += ",JAVA_HOME=" + System.getProperty("java.home");
    }
    // A real secure node has /etc/krb5.conf, where the containers' JVMs (Spark's AM and executors)
    // find the default realm; these nodes point them at the KDC's instead (Java ignores KRB5_CONFIG).
    if (kerberos != null) {
      adminEnv += ",JAVA_TOOL_OPTIONS=-Djava.security.krb5.conf=" + kerberos.krb5Conf;
    }
    conf.set(YarnConfiguration.NM_ADMIN_USER_ENV, adminEnv);
    return conf;
  }

  private boolean noAppRunning() {
    try {
      return yarn.getResourceManager().getRMContext().getRMApps().values().stream()
          .allMatch(app -> List.of("FINISHED", "FAILED", "KILLED").contains(app.getState().name()));
    } catch (Throwable t) {
      return false;  // unknown: stop the slow, sure way
    }
  }

  private String rmAddress() {
    return yarn.getConfig().get(YarnConfiguration.RM_ADDRESS);
  }

  // No web address: in one JVM the last web app started (a NodeManager's) takes over the Guice
  // servlet pipeline that all of them share, so the ResourceManager's UI and REST API answer 404.
  private String readyLine() {
    return "READY hdfs=" + hdfsUrl + " rm=" + rmAddress() + (kerberos == null ? "" : kerberos.readyFields());
  }

  /** Only what a client needs, each file replaced whole so that no reader sees half of one. */
  private void writeClientConf() throws IOException {
    Configuration core = new Configuration(false);
    core.set("fs.defaultFS", hdfsUrl);

    Configuration hdfs = new Configuration(false);
    // Clients ask for 3 replicas by default: more than there are DataNodes.
    hdfs.setInt("dfs.replication", Math.min(3, options.dataNodes));

    Configuration yarnSite = new Configuration(false);
    if (kerberos != null) {
      // What a client must know of a secure cluster: that it is one, the servers' principals (HDFS's
      // and the ResourceManager's, the renewer Spark names in its tokens) and the protection asked.
      core.set("hadoop.security.authentication", "kerberos");
      core.set("hadoop.rpc.protection", "privacy");
      String service = kerberos.principal(Kerberos.SERVICE);
      hdfs.set(DFSConfigKeys.DFS_NAMENODE_KERBEROS_PRINCIPAL_KEY, service);
      hdfs.set(DFSConfigKeys.DFS_DATA_TRANSFER_PROTECTION_KEY, "privacy");
      hdfs.setBoolean(DFSConfigKeys.DFS_ENCRYPT_DATA_TRANSFER_KEY, true);
      yarnSite.set(YarnConfiguration.RM_PRINCIPAL, service);
    }
    Configuration running = yarn.getConfig();
    for (String key : new String[] {
        YarnConfiguration.RM_ADDRESS,
        YarnConfiguration.RM_SCHEDULER_ADDRESS,
        YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS,
        YarnConfiguration.RM_ADMIN_ADDRESS,
        YarnConfiguration.RM_WEBAPP_ADDRESS}) {
      yarnSite.set(key, running.get(key));
    }

    // Without it Spark's AM does not know yarn.io/gpu: it only warns, and asks for containers
    // without GPUs, while its executors still take the discovery script's word for theirs.
    Configuration resourceTypes = new Configuration(false);
    resourceTypes.set(YarnConfiguration.RESOURCE_TYPES, GPU);

    options.confDir.mkdirs();
    write(core, "core-site.xml");
    write(hdfs, "hdfs-site.xml");
    write(yarnSite, "yarn-site.xml");
    write(resourceTypes, "resource-types.xml");
  }

  private void write(Configuration conf, String name) throws IOException {
    Path target = options.confDir.toPath().resolve(name);
    Path partial = options.confDir.toPath().resolve("." + name + ".partial");
    try (OutputStream out = Files.newOutputStream(partial)) {
      conf.writeXml(out);
    }
    Files.move(partial, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** YARN first, as its apps use HDFS; the end of stdin and a signal may both ask. */
  private void stop() {
    stopYarn();
    if (dfs != null) {
      try {
        dfs.shutdown();
      } catch (Throwable t) {
        System.err.println("MiniCluster: stopping HDFS: " + t);
      }
    }
    if (kerberos != null) {
      kerberos.kdc.stop();
    }
  }

  // Synchronized: a signal during a stop from the end of stdin waits for that stop to finish.
  private synchronized void stopYarn() {
    if (yarn == null || yarnStopped) {
      return;
    }
    yarnStopped = true;
    System.err.println("MiniCluster: stopping (threads interrupted by the stop may log errors)");
    try {
      // Once an app has run, each NodeManager's stop takes over 10 s (its timer for deleting the
      // app's logs waits that long to die), and yarn.stop() stops them one after the other: stop them
      // side by side first (a second stop is a no-op).
      List<Thread> stoppers = new ArrayList<>();
      for (int i = 0; i < options.nodeManagers; i++) {
        NodeManager nodeManager = yarn.getNodeManager(i);
        Thread stopper = new Thread(nodeManager::stop, "stop-nodemanager-" + i);
        stopper.start();
        stoppers.add(stopper);
      }
      // A stopping NodeManager's log-deletion timer waits 10 s for tasks due hours later, unless its
      // stop is interrupted while it waits (then it gives up at once): interrupted until it ends. Only
      // when no app runs, so that no container is left for an interrupted stop to miss.
      boolean idle = noAppRunning();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(45);
      for (Thread stopper : stoppers) {
        while (stopper.isAlive() && System.nanoTime() < deadline) {
          stopper.join(250);
          if (idle) {
            stopper.interrupt();
          }
        }
      }
      yarn.stop();
    } catch (Throwable t) {
      System.err.println("MiniCluster: stopping YARN: " + t);
    }
  }
}
