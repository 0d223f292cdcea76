// What the admin-UI browser journeys share: Debian's Chromium (never a downloaded browser),
// numbered full-page screenshots into SCREENSHOT_DIR, and small page helpers.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

const shots = process.env.SCREENSHOT_DIR;
if (shots) fs.mkdirSync(shots, { recursive: true });
let n = 0;
export async function shot(page, name) {
  n += 1;
  if (shots) await page.screenshot({ path: path.join(shots, `${String(n).padStart(2, '0')}-${name}.png`), fullPage: true });
}

/** Clicks and waits for the page it leads to. */
export async function submit(page, selector) {
  await Promise.all([page.waitForNavigation({ timeout: 30000 }), page.click(selector)]);
}

export const text = async (page, selector) => (await page.textContent(selector)).trim();

/** Signs in to the admin pages: e-mail, password, TOTP code. */
export async function signIn(page, base, email, password, code) {
  await page.goto(`${base}/sso/admin`);
  await page.fill('#email', email);
  await submit(page, 'button[type=submit]');
  await page.fill('#password', password);
  await submit(page, 'button[type=submit]');
  await page.fill('#code', code);
  await submit(page, 'button[type=submit]');
}

/** Runs a journey in a fresh browser and prints what it returns as JSON; where it stopped
 * (screenshot and page text) when it fails. */
export async function journey(steps) {
  const browser = await launch();
  let page;
  try {
    page = await (await browser.newContext()).newPage();
    console.log(JSON.stringify(await steps(page)));
  } catch (e) {
    if (page) {
      await shot(page, 'failure').catch(() => {});
      console.error(`stopped at ${page.url()}:\n${(await page.textContent('body').catch(() => '')).slice(0, 2000)}`);
    }
    throw e;
  } finally {
    await browser.close();
  }
}
