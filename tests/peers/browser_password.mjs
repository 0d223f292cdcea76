// Drives Debian's Chromium (never a downloaded browser) through the password and break-glass
// pages. Usage: node browser_password.mjs BASE EMAIL PASSWORD BG_EMAIL BG_PASSWORD BG_CODE
// Prints {"password": {"url", "text"}, "breakglass": {"url", "text"}}.
import { chromium } from 'playwright-core';

const [base, email, password, bgEmail, bgPassword, bgCode] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = {};
try {
  // Email first, then the password step (a domain without SSO).
  let page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/sso/login?return_to=%2Fsso%2Fme`);
  await page.fill('#email', email);
  await Promise.all([
    page.waitForSelector('#password', { timeout: 30000 }),
    page.click('button[type=submit]'),
  ]);
  await page.fill('#password', password);
  await Promise.all([
    page.waitForURL(`${base}/sso/me`, { timeout: 30000 }),
    page.click('button[type=submit]'),
  ]);
  result.password = { url: page.url(), text: await page.textContent('#user-name') };

  // The break-glass page, in a fresh browser profile.
  page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/sso/breakglass`);
  await page.fill('#email', bgEmail);
  await page.fill('#password', bgPassword);
  await page.fill('#code', bgCode);
  await Promise.all([
    page.waitForURL(/\/sso\/admin\/orgs\//, { timeout: 30000 }),
    page.click('button[type=submit]'),
  ]);
  result.breakglass = { url: page.url(), text: await page.textContent('.admin-nav .muted'), emergency: await page.textContent('#emergency') };
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
